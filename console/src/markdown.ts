// A tiny markdown renderer for memory files: headings, lists, block quotes, fenced code, paragraphs;
// inline code, bold, italics; links shown as their text and address (never followed, never an href).
// It builds Preact elements whose children are strings, so the file's text can only ever be text: no
// HTML in a memory file is parsed, and nothing goes through innerHTML. Control, bidirectional and
// invisible format characters are shown as marks (format.ts shownText) before any markup is read.

import { type ComponentChildren, h } from 'preact';
import { shownText } from './format.js';

/** Inline markup of one line: `code`, **bold**, *em* / _em_, [text](url). */
export function inline(text: string): ComponentChildren[] {
  const out: ComponentChildren[] = [];
  const re = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1] !== undefined) out.push(h('code', null, m[1]));
    else if (m[2] !== undefined) out.push(h('strong', null, m[2]));
    else if (m[3] !== undefined || m[4] !== undefined) out.push(h('em', null, m[3] ?? m[4]));
    else out.push(h('span', { class: 'md-link', title: m[6] }, m[5], ' ', h('code', null, `<${m[6]}>`)));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

export function renderMarkdown(source: string) {
  // a mark is `⟨U+202E⟩`: none of its characters is markup, so the marks change no block or span
  const lines = shownText(source.replace(/\r\n?/g, '\n')).split('\n');
  const blocks: ComponentChildren[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    const fence = /^\s*(```|~~~)/.exec(line);
    if (fence) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !lines[i]!.trimStart().startsWith(fence[1]!)) body.push(lines[i++]!);
      i++;
      blocks.push(h('pre', { class: 'md-code' }, body.join('\n')));
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      blocks.push(h(`h${Math.min(6, heading[1]!.length + 2)}`, null, ...inline(heading[2]!)));
      i++;
      continue;
    }
    if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const items: ComponentChildren[] = [];
      while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i]!)) {
        items.push(h('li', null, ...inline(lines[i]!.replace(/^\s*([-*+]|\d+[.)])\s+/, ''))));
        i++;
      }
      blocks.push(h(ordered ? 'ol' : 'ul', null, ...items));
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted: string[] = [];
      while (i < lines.length && /^\s*>/.test(lines[i]!)) quoted.push(lines[i++]!.replace(/^\s*>\s?/, ''));
      blocks.push(h('blockquote', null, ...inline(quoted.join(' '))));
      continue;
    }
    if (line.trim() === '') {
      i++;
      continue;
    }
    const para: string[] = [];
    while (
      i < lines.length &&
      lines[i]!.trim() !== '' &&
      !/^(#{1,6}\s|\s*```|\s*~~~|\s*>|\s*([-*+]|\d+[.)])\s)/.test(lines[i]!)
    )
      para.push(lines[i++]!);
    if (para.length === 0) para.push(lines[i++]!);
    blocks.push(h('p', null, ...inline(para.join(' '))));
  }
  return h('div', { class: 'markdown' }, ...blocks);
}
