// The console's shell: the language switch, the API key dialog and the views, chosen by the URL's
// fragment (#/playground, #/sessions, #/sessions/<code>, #/jobs, #/models, #/admin), so a reload shows the same view.
import { saveKey, setKeyPrompt, storedKey } from "./api.js";
import { renderAdmin } from "./admin.js";
import { renderJobs } from "./jobs.js";
import { renderModels } from "./models.js";
import { initialLanguage, onLanguageChange, setLanguage, t } from "./i18n.js";
import { renderPlayground } from "./playground.js";
import { renderSession, renderSessionStart } from "./sessions.js";

const main = document.getElementById("main");
const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");
const keyReason = document.getElementById("key-reason");

// Each page by its fragment; the first is the default.
const PAGES = {
  playground: (main) => renderPlayground(main),
  sessions: (main, code) => (code ? renderSession(main, decodeURIComponent(code)) : renderSessionStart(main)),
  jobs: (main) => renderJobs(main),
  models: (main) => renderModels(main),
  admin: (main) => renderAdmin(main),
};

function route() {
  const path = location.hash.replace(/^#/, "") || "/playground";
  const [, named, code] = path.split("/");
  const page = named in PAGES ? named : "playground";
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  PAGES[page](main, code);
  document.title = `${t(`nav.${page}`)} — ${t("app.title")}`;
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
