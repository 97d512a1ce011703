// Terminal page (`/sessions/{id}/terminal`), loaded lazily with xterm.js.
// Speaks the session's terminal WebSocket: binary frames are terminal bytes
// both ways, text frames JSON control messages (`resize` out; `ready` with
// the terminal id and `exit` in). While the socket connects (which wakes a
// sleeping session) the session's state and latest event are shown over the
// terminal; a dropped connection reconnects with backoff and reattaches the
// same shell by its terminal id.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { h, setText } from "../dom.js";
import { get, seg } from "../api.js";
import { toast } from "../ui.js";

const BACKOFF_MS = [500, 1000, 2000, 4000, 5000];
const STORE_KEY = (id) => `terminal-id:${id}`;

function loadCss(href) {
  if (document.querySelector(`link[href="${href}"]`)) return Promise.resolve();
  return new Promise((resolve) => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    link.onload = link.onerror = () => resolve();
    document.head.appendChild(link);
  });
}

export async function terminalPage(ctx) {
  const id = ctx.params.id;
  const base = `/sessions/${seg(id)}`;
  const [session] = await Promise.all([get(base), loadCss("/assets/terminal.css")]);

  const status = h("span", { class: "term-status", testid: "terminal-status", role: "status" }, "connecting");
  const progress = h("div", { class: "term-progress", testid: "terminal-progress", hidden: true });
  const newShell = h("button", { type: "button", class: "btn small", hidden: true, testid: "terminal-new-shell" }, "New shell");
  const mount = h("div", { class: "term-mount", testid: "terminal" });
  const page = h(
    "div",
    { class: "term-page" },
    h(
      "div",
      { class: "term-bar" },
      h("a", { href: base, class: "btn small ghost" }, `← ${session.name}`),
      status,
      newShell,
      h("span", { class: "hint term-hint" }, "Copy: select (Ctrl/⌘+Shift+C) · Paste: Ctrl/⌘+Shift+V"),
    ),
    h("div", { class: "term-wrap" }, mount, progress),
  );
  ctx.show(page);
  document.body.classList.add("terminal-mode");
  ctx.onCleanup(() => document.body.classList.remove("terminal-mode"));

  const term = new Terminal({
    cursorBlink: true,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
    fontSize: 14,
    scrollback: 5000,
    theme: { background: "#111418", foreground: "#e6e6e6" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(mount);
  const safeFit = () => {
    try {
      fit.fit();
    } catch {
      /* not laid out yet */
    }
  };
  safeFit();
  term.focus();

  // For the browser tests: the text in xterm's buffer (the DOM is unreliable).
  window.__bfTerminalText = () => {
    const buf = term.buffer.active;
    const lines = [];
    for (let i = 0; i < buf.length; i++) {
      const line = buf.getLine(i);
      lines.push(line ? line.translateToString(true) : "");
    }
    return lines.join("\n");
  };

  let ws = null;
  // For the browser tests too: drop the connection as a network blip would.
  window.__bfTerminalDrop = () => ws && ws.close();
  // The terminal id survives a reload of this tab (sessionStorage; it is not
  // a credential), so the same shell is reattached.
  let terminalId = sessionStorage.getItem(STORE_KEY(id)) || null;
  let idConfirmed = false; // a `ready` on this page named terminalId
  let attempt = 0;
  let retryTimer = null;
  let progressTimer = null;
  let disposed = false;
  let exited = false;
  let lastSeq;
  let lastEvent = "";
  const encoder = new TextEncoder();

  const setStatus = (text, kind) => {
    setText(status, text);
    status.className = `term-status ${kind || ""}`;
  };

  // ---- wake / connection progress (polls the session and its events)
  const pollProgress = async () => {
    if (disposed) return;
    try {
      const s = await get(base);
      for (;;) {
        const page = await get(`${base}/events`, { after: lastSeq, limit: 200 });
        for (const ev of page.items) {
          lastSeq = ev.seq;
          lastEvent = `${ev.from_state} → ${ev.to_state}${ev.reason ? `: ${ev.reason}` : ""}`;
        }
        if (page.items.length < 200 || !page.next_cursor) break;
      }
      if (disposed || !progressTimer) return;
      if (s.state !== "running") setStatus(`waking… (${s.state})`, "busy");
      setText(progress, `Session ${s.state}${lastEvent ? ` — ${lastEvent}` : ""}${s.failure_reason ? `\n${s.failure_reason}` : ""}`);
      progress.hidden = false;
    } catch (err) {
      setText(progress, err.message);
      progress.hidden = false;
    }
    if (progressTimer) progressTimer = setTimeout(pollProgress, 1000);
  };
  const startProgress = () => {
    if (progressTimer) return;
    progressTimer = setTimeout(pollProgress, 0);
  };
  const stopProgress = () => {
    clearTimeout(progressTimer);
    progressTimer = null;
    progress.hidden = true;
  };

  // ---- the socket
  const send = (data) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
  };
  const sendResize = () => send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));

  const connect = () => {
    if (disposed) return;
    exited = false;
    newShell.hidden = true;
    safeFit();
    setStatus(attempt === 0 ? "connecting" : "reconnecting…", "busy");
    const url = new URL(`/api/v1${base}/terminal`, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("cols", String(term.cols));
    url.searchParams.set("rows", String(term.rows));
    if (terminalId) url.searchParams.set("terminal_id", terminalId);
    const sock = new WebSocket(url);
    sock.binaryType = "arraybuffer";
    ws = sock;
    let opened = false;
    startProgress();

    sock.onopen = () => {
      if (ws !== sock) return;
      opened = true;
      attempt = 0;
      stopProgress();
      setStatus("connected", "ok");
      sendResize();
      term.focus();
    };
    sock.onmessage = (e) => {
      if (ws !== sock) return;
      if (typeof e.data === "string") {
        let msg;
        try {
          msg = JSON.parse(e.data);
        } catch {
          return;
        }
        if (msg.type === "ready" && msg.terminal_id) {
          // A reattach replays the shell's recent output: start from a clean
          // screen so nothing shows twice.
          term.reset();
          terminalId = msg.terminal_id;
          idConfirmed = true;
          sessionStorage.setItem(STORE_KEY(id), terminalId);
        } else if (msg.type === "exit") {
          exited = true;
          terminalId = null;
          sessionStorage.removeItem(STORE_KEY(id));
          setStatus(`exited (code ${msg.code})`, "bad");
          term.write(`\r\n\x1b[2m[shell exited with code ${msg.code}]\x1b[0m\r\n`);
          newShell.hidden = false;
        }
        return;
      }
      term.write(new Uint8Array(e.data));
    };
    sock.onclose = () => {
      if (ws !== sock || disposed) return;
      ws = null;
      if (exited) {
        stopProgress();
        return;
      }
      scheduleReconnect(opened);
    };
  };

  const scheduleReconnect = async (wasOpen) => {
    const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt++;
    setStatus("reconnecting…", "busy");
    if (!wasOpen && terminalId && !idConfirmed) {
      // A remembered shell that cannot be reattached (gone with its
      // container): start a fresh one.
      terminalId = null;
      sessionStorage.removeItem(STORE_KEY(id));
    }
    if (!wasOpen) {
      // The upgrade was refused: a session that cannot be woken stops here.
      try {
        const s = await get(base);
        if (disposed) return;
        if (s.state === "failed" || s.state === "stopping") {
          stopProgress();
          setStatus(`session ${s.state}`, "bad");
          setText(progress, s.failure_reason ? `Session ${s.state}: ${s.failure_reason}` : `Session ${s.state}.`);
          progress.hidden = false;
          newShell.textContent = "Retry";
          newShell.hidden = false;
          return;
        }
      } catch (err) {
        if (disposed) return;
        if (err.code === "session_not_found") {
          stopProgress();
          setStatus("session not found", "bad");
          return;
        }
      }
    }
    retryTimer = setTimeout(connect, delay);
  };

  newShell.addEventListener("click", () => {
    clearTimeout(retryTimer);
    attempt = 0;
    if (exited) terminalId = null;
    newShell.textContent = "New shell";
    connect();
  });

  // ---- input, resize, clipboard
  term.onData((data) => send(encoder.encode(data)));
  term.onBinary((data) => {
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
    send(bytes);
  });
  term.onResize(() => sendResize());
  const observer = new ResizeObserver(() => safeFit());
  observer.observe(mount);

  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== "keydown" || !e.shiftKey || !(e.ctrlKey || e.metaKey)) return true;
    const key = e.key.toLowerCase();
    if (key === "c") {
      if (term.hasSelection()) {
        navigator.clipboard.writeText(term.getSelection()).catch(() => toast("Copying needs clipboard permission", "bad"));
      }
      e.preventDefault();
      return false;
    }
    if (key === "v") {
      e.preventDefault();
      navigator.clipboard
        .readText()
        .then((text) => text && term.paste(text))
        .catch(() => toast("Pasting needs clipboard permission; use the browser's Paste instead", "bad"));
      return false;
    }
    return true;
  });
  // A paste event that reached the wrapper was not handled by xterm (it stops
  // propagation of the ones it handles): send it to the shell.
  mount.addEventListener("paste", (e) => {
    const text = e.clipboardData && e.clipboardData.getData("text/plain");
    if (text) {
      e.preventDefault();
      term.paste(text);
    }
  });

  ctx.onCleanup(() => {
    disposed = true;
    clearTimeout(retryTimer);
    stopProgress();
    observer.disconnect();
    if (ws) ws.close(1000, "page left");
    ws = null;
    term.dispose();
    window.__bfTerminalText = () => "";
    window.__bfTerminalDrop = () => {};
  });

  connect();
}
