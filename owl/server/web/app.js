// The page's entry point: the pages (chat, models, images, documents) switched by the nav and
// the URL hash. The images and documents pages' modules load when each is first shown.
import { startChat } from "./chat.js";
import { refresh, startModels } from "./models.js";

function show(page) {
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== page;
  for (const button of document.querySelectorAll("nav button")) {
    if (button.dataset.page === page) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  if (page === "models") refresh();
  if (page === "images") import("./images.js").then((images) => images.showImages());
  if (page === "documents") import("./documents.js").then((documents) => documents.showDocuments());
}

function route() {
  const page = location.hash.slice(1);
  show(["models", "images", "documents"].includes(page) ? page : "chat");
}

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => { location.hash = button.dataset.page; });
}
window.addEventListener("hashchange", route);
startModels();
route();
await startChat();
document.body.dataset.ready = "true"; // the tests wait for this
