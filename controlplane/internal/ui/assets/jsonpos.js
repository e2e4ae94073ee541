// jsonpos: a JSON parser that remembers on which line each value starts, so
// that the server's field paths ("targets[0].url") can be shown beside the
// line of the editor that holds them. JSON.parse gives no positions.

export class JSONSyntaxError extends Error {
  constructor(message, line) {
    super(message);
    this.line = line;
  }
}

// parse returns {value, lines}: lines maps a path in the server's notation
// (a.b[0].c; "" for the document) to the 1-based line where its value
// starts, or, for object members, where its key starts.
export function parse(text) {
  let i = 0;
  let line = 1;
  const lines = new Map();

  const fail = (msg) => { throw new JSONSyntaxError(`${msg} (line ${line})`, line); };
  const ws = () => {
    while (i < text.length) {
      const c = text[i];
      if (c === '\n') { line++; i++; } else if (c === ' ' || c === '\t' || c === '\r') { i++; } else break;
    }
  };
  const str = () => {
    let out = '';
    i++; // opening quote
    while (i < text.length) {
      const c = text[i++];
      if (c === '"') return out;
      if (c === '\n') fail('line break inside a string');
      if (c === '\\') {
        const e = text[i++];
        const map = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e === 'u') {
          const hex = text.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          i += 4;
        } else if (e in map) out += map[e];
        else fail('bad escape');
      } else out += c;
    }
    fail('unterminated string');
  };
  const value = (path) => {
    ws();
    if (i >= text.length) fail('unexpected end of the document');
    lines.has(path) || lines.set(path, line);
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = {};
      ws();
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a member name in double quotes');
        const keyLine = line;
        const k = str();
        const p = path === '' ? k : `${path}.${k}`;
        lines.set(p, keyLine);
        ws();
        if (text[i] !== ':') fail(`expected ':' after "${k}"`);
        i++;
        obj[k] = value(p);
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return obj; }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(value(`${path}[${arr.length}]`));
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    const m = /^(-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400));
    if (!m) fail('unexpected character ' + JSON.stringify(c));
    i += m[0].length;
    return JSON.parse(m[0]);
  };

  const v = value('');
  ws();
  if (i < text.length) fail('unexpected text after the document');
  return { value: v, lines };
}

// normalize writes a server field path the way parse records paths:
// headers["X-Id"] and headers.X-Id are the same member.
export function normalize(field) {
  return field.replace(/\["([^"]*)"\]/g, '.$1').replace(/^\./, '');
}

// lineOf finds the line of a field path, or of its nearest ancestor that
// the document has (a missing member is reported where its object starts).
export function lineOf(lines, field) {
  let p = normalize(field || '');
  for (;;) {
    if (lines.has(p)) return lines.get(p);
    if (p === '') return 1;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    p = cut < 0 ? '' : p.slice(0, cut);
  }
}
