"""Markdown files rendered to HTML at build time, exported as {slug: {title, html}}."""

import html
import re

import vmd

watch = ["../../content/posts/*.md"]


def render(markdown: str) -> str:
    """A deliberately small Markdown subset: headings, lists, bold, code, paragraphs."""
    out, items = [], []

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

    def flush() -> None:
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        if line.startswith("- "):
            items.append(inline(line[2:]))
            continue
        flush()
        if m := re.match(r"(#{1,6}) (.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)


def load(ctx: vmd.Context) -> str:
    posts = {}
    for name in ctx.watched_files:
        text = (ctx.path.parent / name).read_text(encoding="utf-8")
        title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), name)
        slug = name.rsplit("/", 1)[-1].removesuffix(".md")
        posts[slug] = {"title": title, "html": render(text)}
    return vmd.json_module(posts)
