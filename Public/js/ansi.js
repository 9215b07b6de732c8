// ANSI escape sequences in log messages: stripped for search, copy and export; SGR colours and
// attributes turned into styled runs for rendering.

// CSI sequences (ESC [ … final), OSC sequences (ESC ] … BEL or ESC \), other two-byte escapes.
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x1b/g;
const CSI = /\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x1b/g;

/** `text` without escape sequences (the same string when it has none). */
export function stripAnsi(text) {
  return text.includes('\x1b') ? text.replace(ESCAPES, '') : text;
}

/** The xterm 256-colour palette entry `n` (16…255) as CSS. */
function color256(n) {
  if (n < 232) {
    const i = n - 16;
    const steps = [0, 95, 135, 175, 215, 255];
    return `rgb(${steps[Math.floor(i / 36)]},${steps[Math.floor(i / 6) % 6]},${steps[i % 6]})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey},${grey},${grey})`;
}

/**
 * Splits a message with SGR codes into runs over its stripped text:
 * `[{start, end, className, color, background}]` (only styled runs are listed).
 */
export function ansiRuns(text) {
  const runs = [];
  let plainLength = 0;
  let state = { bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false, fg: null, bg: null };
  let runStart = 0;
  let last = 0;
  const flush = (end) => {
    if (end > runStart) {
      const run = styleOf(state);
      if (run) runs.push({ start: runStart, end, ...run });
    }
    runStart = end;
  };
  CSI.lastIndex = 0;
  let match;
  while ((match = CSI.exec(text)) !== null) {
    plainLength += match.index - last;
    last = CSI.lastIndex;
    if (match[2] !== 'm') continue;
    flush(plainLength);
    state = applySGR(state, match[1]);
  }
  plainLength += text.length - last;
  flush(plainLength);
  return runs;
}

function applySGR(previous, parameters) {
  const state = { ...previous };
  const codes = parameters === '' ? [0] : parameters.split(/[;:]/).map((c) => (c === '' ? 0 : Number(c)));
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) Object.assign(state, { bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false, fg: null, bg: null });
    else if (code === 1) state.bold = true;
    else if (code === 2) state.dim = true;
    else if (code === 3) state.italic = true;
    else if (code === 4) state.underline = true;
    else if (code === 7) state.inverse = true;
    else if (code === 9) state.strike = true;
    else if (code === 22) state.bold = state.dim = false;
    else if (code === 23) state.italic = false;
    else if (code === 24) state.underline = false;
    else if (code === 27) state.inverse = false;
    else if (code === 29) state.strike = false;
    else if (code >= 30 && code <= 37) state.fg = code - 30;
    else if (code >= 90 && code <= 97) state.fg = code - 90 + 8;
    else if (code === 39) state.fg = null;
    else if (code >= 40 && code <= 47) state.bg = code - 40;
    else if (code >= 100 && code <= 107) state.bg = code - 100 + 8;
    else if (code === 49) state.bg = null;
    else if (code === 38 || code === 48) {
      let value = null;
      if (codes[i + 1] === 5 && i + 2 < codes.length) {
        const n = codes[i + 2] & 255;
        value = n < 16 ? n : color256(n);
        i += 2;
      } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
        value = `rgb(${codes[i + 2] & 255},${codes[i + 3] & 255},${codes[i + 4] & 255})`;
        i += 4;
      }
      if (code === 38) state.fg = value;
      else state.bg = value;
    }
  }
  return state;
}

function styleOf(state) {
  const classes = [];
  let color = null;
  let background = null;
  let fg = state.fg;
  let bg = state.bg;
  if (state.inverse) {
    [fg, bg] = [bg ?? 'fg', fg ?? 'bg'];
  }
  if (typeof fg === 'number') classes.push(`ansi-fg${fg}`);
  else if (fg === 'fg') classes.push('ansi-fg-default');
  else if (fg === 'bg') classes.push('ansi-fg-inverse');
  else if (fg) color = fg;
  if (typeof bg === 'number') classes.push(`ansi-bg${bg}`);
  else if (bg === 'fg') classes.push('ansi-bg-inverse');
  else if (bg === 'bg') classes.push('ansi-bg-default');
  else if (bg) background = bg;
  if (state.bold) classes.push('ansi-bold');
  if (state.dim) classes.push('ansi-dim');
  if (state.italic) classes.push('ansi-italic');
  if (state.underline) classes.push('ansi-underline');
  if (state.strike) classes.push('ansi-strike');
  if (classes.length === 0 && !color && !background) return null;
  return { className: `ansi ${classes.join(' ')}`.trim(), color, background };
}
