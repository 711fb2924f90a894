// The console's strings, one catalogue per language (i18n/<lang>.json), and locale-aware formatting.
const STORAGE = "llmmesh.language";
export const LANGUAGES = ["en", "ja"];
let language = "en";
let catalogue = {};
let fallback = {};
const listeners = [];

async function load(lang) {
  const response = await fetch(`/console/i18n/${lang}.json`);
  return response.json();
}

export function initialLanguage() {
  const stored = localStorage.getItem(STORAGE);
  if (LANGUAGES.includes(stored)) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("ja") ? "ja" : "en";
}

// Each switch is numbered: one that finishes after a later one (the page's first, still loading its
// catalogue when the user picks another language) is dropped, so the last choice is what shows.
let switches = 0;

export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) lang = "en";
  const mine = ++switches;
  const english = Object.keys(fallback).length ? fallback : await load("en");
  const chosen = lang === "en" ? english : await load(lang);
  if (mine !== switches) return;
  fallback = english;
  catalogue = chosen;
  language = lang;
  localStorage.setItem(STORAGE, lang);
  document.documentElement.lang = lang;
  translate(document);
  for (const listener of listeners) listener(lang);
}

export const currentLanguage = () => language;
export const onLanguageChange = (listener) => listeners.push(listener);

// A string by key, with {name} placeholders filled from vars.
export function t(key, vars = {}) {
  const text = catalogue[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export const formatNumber = (value, options = {}) => new Intl.NumberFormat(language, options).format(value);
export const formatDate = (value) =>
  new Intl.DateTimeFormat(language, { dateStyle: "medium", timeStyle: "medium" }).format(new Date(value));

// Fill every element under root that names its strings: data-i18n (text), data-i18n-attr
// ("attr:key;attr:key"), data-number / data-date (a value formatted for the locale).
export function translate(root) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n, JSON.parse(element.dataset.i18nVars || "{}"));
  }
  for (const element of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of element.dataset.i18nAttr.split(";")) {
      const [attribute, key] = pair.split(":");
      element.setAttribute(attribute, t(key));
    }
  }
  for (const element of root.querySelectorAll("[data-number]")) {
    const digits = Number(element.dataset.digits || 0);
    element.textContent = formatNumber(Number(element.dataset.number), {
      maximumFractionDigits: digits,
      minimumFractionDigits: digits,
    });
  }
  for (const element of root.querySelectorAll("[data-date]")) {
    element.textContent = formatDate(element.dataset.date);
  }
}
