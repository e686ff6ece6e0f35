// A small Markdown subset rendered straight into DOM nodes: text only ever becomes text nodes,
// so model output cannot inject markup. Paragraphs, line breaks, headings, lists, quotes,
// fenced code (with a Copy button), rules, **bold**, *italic*, `code` and http(s)/mailto links.
import { h } from "./dom.js";

const SAFE_SCHEMES = ["http:", "https:", "mailto:"];
const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])\s+(.*)$/;
// One pass over the inline forms; the first alternative that matches at a place wins.
const INLINE =
  /`([^`\n]+)`|\[([^\]\n]+)\]\(\s*([^()\s]+)\s*\)|\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__|\*(?=[^\s*])([\s\S]*?[^\s*])\*|(?<![\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)|((?:https?:\/\/|mailto:)[^\s<>]*[^\s<>.,:;"')\]!?])/g;

// An absolute URL with a safe scheme, or null: relative, javascript:, data: and the rest stay text.
export function safeUrl(href) {
  try {
    const url = new URL(href);
    return SAFE_SCHEMES.includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, children) {
  const url = safeUrl(href);
  if (!url) return null;
  return h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, children);
}

// Inline text into nodes; unmatched markers are left as they are.
export function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    let node = null;
    if (m[1] !== undefined) node = h("code", {}, m[1]);
    else if (m[2] !== undefined) node = link(m[3], inline(m[2]));
    else if (m[4] !== undefined || m[5] !== undefined) node = h("strong", {}, inline(m[4] ?? m[5]));
    else if (m[6] !== undefined || m[7] !== undefined) node = h("em", {}, inline(m[6] ?? m[7]));
    else if (m[8] !== undefined) node = link(m[8], m[8]);
    if (!node) continue; // an unsafe link: its text stays as written
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(node);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// Lines joined by <br>, as people write chat messages (a single newline is a break).
function lines(list) {
  return list.flatMap((line, i) => (i ? [h("br"), ...inline(line)] : inline(line)));
}

async function copy(button, text, pre) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    // No clipboard (a non-secure origin, or refused): select the code for Ctrl+C instead.
    getSelection().selectAllChildren(pre);
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => (button.textContent = "Copy"), 2000);
}

function codeBlock(code, lang) {
  const pre = h("pre", {}, h("code", lang ? { "data-lang": lang } : {}, code));
  const button = h("button", { type: "button", class: "copy", "aria-label": "Copy code" }, "Copy");
  button.addEventListener("click", () => copy(button, code, pre));
  return h("div", { class: "code" }, h("div", { class: "code-bar" }, h("span", {}, lang), button), pre);
}

function list(items, ordered, start) {
  const attrs = ordered && start !== 1 ? { start } : {};
  return h(ordered ? "ol" : "ul", attrs, items.map((item) => h("li", {}, lines(item))));
}

// Markdown text into a DocumentFragment. An unclosed fence (a stream mid-way) runs to the end.
export function render(text) {
  const src = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  const frag = document.createDocumentFragment();
  let para = [];
  const flush = () => {
    if (para.length) frag.append(h("p", {}, lines(para)));
    para = [];
  };
  for (let i = 0; i < src.length; i++) {
    const line = src[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flush();
      const close = new RegExp(`^ {0,3}${m[1][0]}{${m[1].length},}\\s*$`);
      const body = [];
      while (++i < src.length && !close.test(src[i])) body.push(src[i]);
      frag.append(codeBlock(body.join("\n"), m[2]));
    } else if (!line.trim()) flush();
    else if ((m = HEADING.exec(line))) {
      flush();
      frag.append(h(`h${Math.min(m[1].length + 2, 6)}`, {}, inline(m[2])));
    } else if (RULE.test(line)) {
      flush();
      frag.append(h("hr"));
    } else if (QUOTE.test(line)) {
      flush();
      const body = [];
      for (; i < src.length && QUOTE.test(src[i]); i++) body.push(src[i].replace(QUOTE, ""));
      i--;
      frag.append(h("blockquote", {}, render(body.join("\n"))));
    } else if ((m = ITEM.exec(line))) {
      flush();
      const ordered = /\d/.test(m[2]);
      const items = [[m[3]]];
      const start = ordered ? parseInt(m[2], 10) : 1;
      while (i + 1 < src.length) {
        const next = src[i + 1];
        const n = ITEM.exec(next);
        const after = ITEM.exec(src[i + 2] ?? "");
        if (n && /\d/.test(n[2]) === ordered) items.push([n[3]]);
        else if (!next.trim() && after && /\d/.test(after[2]) === ordered) {
          items.push([after[3]]); // a loose list: a blank line between its items
          i++;
        }
        else if (next.trim() && /^\s/.test(next) && !n) items.at(-1).push(next.trim());
        else break;
        i++;
      }
      frag.append(list(items, ordered, start));
    } else para.push(line);
  }
  flush();
  return frag;
}
