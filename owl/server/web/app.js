// The page's entry point: two pages (chat, models) switched by the nav and the URL hash.
import { startChat } from "./chat.js";
import { refresh, startModels } from "./models.js";

function show(page) {
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== page;
  for (const button of document.querySelectorAll("nav button")) {
    if (button.dataset.page === page) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  if (page === "models") refresh();
}

function route() {
  show(location.hash === "#models" ? "models" : "chat");
}

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => { location.hash = button.dataset.page; });
}
window.addEventListener("hashchange", route);
startModels();
route();
await startChat();
document.body.dataset.ready = "true"; // the tests wait for this
