// The page router: #/NAME mounts pages/NAME.js into <main>. Each page module exports
// mount(root) and may return a function that unmounts it (timers, streams).
const PAGES = ["chat", "models", "status", "requests", "settings"];
let unmount = null;

async function show() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0] || "chat";
  const page = PAGES.includes(name) ? name : "chat";
  if (unmount) {
    unmount();
    unmount = null;
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = document.getElementById("page");
  root.replaceChildren();
  root.className = `page-${page}`;
  document.title = `Hearth · ${page[0].toUpperCase()}${page.slice(1)}`;
  const mod = await import(`./pages/${page}.js`);
  unmount = (await mod.mount(root)) || null;
}

window.addEventListener("hashchange", show);
show();
