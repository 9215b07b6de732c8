// Server-Sent Events with the face of a WebSocket, for the streams' fallback where WebSockets are
// blocked (a proxy that refuses upgrades): `onopen`, `onmessage({data})`, `onclose({code, reason})` and
// `close()`, so that the stream code reads both alike. The gateway's events carry exactly the JSON of
// the WebSocket messages (docs/PROTOCOL.md, "Server-Sent Events").
//
// `reconnect: true` lets the browser reconnect by itself after a dropped connection (it sends the last
// event's id as `Last-Event-ID`, which a worker's `/events` resumes from); `onreconnecting()` says so.
// Otherwise, and whenever the browser gives up (an HTTP error), the source is closed and `onclose`
// reports code 1006, like a WebSocket that failed.

export class EventSourceSocket {
  onopen = null;
  onmessage = null;
  onclose = null;
  onreconnecting = null;
  #source;
  #closed = false;

  constructor(url, { reconnect = false } = {}) {
    this.url = url;
    this.#source = new EventSource(url);
    this.#source.onopen = () => {
      if (!this.#closed) this.onopen?.({});
    };
    this.#source.onmessage = (event) => {
      if (!this.#closed) this.onmessage?.({ data: event.data });
    };
    this.#source.onerror = () => {
      if (this.#closed) return;
      if (reconnect && this.#source.readyState === EventSource.CONNECTING) {
        this.onreconnecting?.();
        return;
      }
      this.#finish(1006, 'the event stream failed');
    };
  }

  /** Closes the stream; `onclose` follows (as with a WebSocket), with `code`. */
  close(code = 1000, reason = '') {
    if (this.#closed) return;
    this.#finish(code, reason);
  }

  #finish(code, reason) {
    this.#closed = true;
    this.#source.close();
    // A WebSocket reports its own close() too; the stream code ignores sockets it has let go.
    const handler = this.onclose;
    setTimeout(() => handler?.({ code, reason, wasClean: code === 1000 }), 0);
  }
}

/**
 * Why the gateway refuses `url` (an HTTP status ≥ 400 and its JSON error message), or `null` when it
 * answers (or cannot be reached: `{unreachable: true}`). Reads only the status and a refusal's body.
 */
export async function probe(url) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 5000);
  try {
    const response = await fetch(url, { cache: 'no-store', signal: controller.signal, headers: { Accept: 'text/event-stream' } });
    if (response.status < 400) {
      controller.abort();
      return null;
    }
    let message = `the gateway answered ${response.status}`;
    try {
      const body = await response.json();
      if (body?.error?.message) message = body.error.message;
    } catch {
      // Not JSON: the status says enough.
    }
    return { status: response.status, message };
  } catch {
    return { unreachable: true };
  } finally {
    clearTimeout(timer);
  }
}
