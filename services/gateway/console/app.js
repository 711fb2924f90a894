// The console's shell: the language switch, the API key dialog and the views, chosen by the URL's
// fragment (#/playground, #/sessions, #/sessions/<code>), so a reload shows the same view.
import { saveKey, setKeyPrompt, storedKey } from "./api.js";
import { initialLanguage, onLanguageChange, setLanguage, t } from "./i18n.js";
import { renderPlayground } from "./playground.js";
import { renderSession, renderSessionStart } from "./sessions.js";

const main = document.getElementById("main");
const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");
const keyReason = document.getElementById("key-reason");

function route() {
  const path = location.hash.replace(/^#/, "") || "/playground";
  const [, page, code] = path.split("/");
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (page === "sessions" && code) renderSession(main, decodeURIComponent(code));
  else if (page === "sessions") renderSessionStart(main);
  else renderPlayground(main);
  document.title = `${t(`nav.${page === "sessions" ? "sessions" : "playground"}`)} — ${t("app.title")}`;
}

// The dialog resolves true once a key was given (the failed call is then made again with it).
function askForKey(error) {
  keyReason.textContent = error ? `${error.message} (${error.code})` : "";
  keyInput.value = "";
  dialog.showModal();
  keyInput.focus();
  return new Promise((resolve) => {
    const done = (given) => {
      dialog.removeEventListener("close", onClose);
      resolve(given);
    };
    const onClose = () => {
      if (dialog.returnValue === "save" && keyInput.value.trim()) {
        saveKey(keyInput.value.trim());
        done(true);
      } else done(false);
    };
    dialog.addEventListener("close", onClose);
  });
}

document.getElementById("key-cancel").addEventListener("click", () => dialog.close("cancel"));
document.getElementById("key-forget").addEventListener("click", () => {
  saveKey(null);
  dialog.close("cancel");
});
document.getElementById("key-button").addEventListener("click", async () => {
  if (await askForKey(null)) route();
});
setKeyPrompt(askForKey);

const language = document.getElementById("language");
language.addEventListener("change", () => setLanguage(language.value));
onLanguageChange((lang) => {
  language.value = lang;
  document.getElementById("key-button").dataset.hasKey = storedKey() ? "yes" : "no";
});

await setLanguage(initialLanguage());
window.addEventListener("hashchange", route);
route();
