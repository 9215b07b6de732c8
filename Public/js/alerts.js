// ERROR and CRITICAL alerts: a count for the badge, the page title flashing while the page is in the
// background, and desktop notifications once the user has allowed them.

const FLASH_MS = 1000;
const NOTIFY_EVERY_MS = 5000;

export class Alerts {
  #baseTitle;
  #name;
  #flashTimer = null;
  #flashOn = false;
  #lastNotification = 0;
  #onChange;
  /** Whether to show desktop notifications (when allowed). */
  notify = false;
  /** ERROR and CRITICAL records seen. */
  count = 0;
  /** Those that arrived live while the page was in the background, not yet seen. */
  unseen = 0;

  constructor({ name, onChange } = {}) {
    this.#baseTitle = document.title;
    this.#name = name;
    this.#onChange = onChange;
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.acknowledge();
    });
    window.addEventListener('focus', () => this.acknowledge());
  }

  /** Whether desktop notifications can be asked for, and their permission. */
  get notificationPermission() {
    return 'Notification' in window ? Notification.permission : 'unsupported';
  }

  /** Asks the user to allow desktop notifications (from a click). */
  async enableNotifications() {
    if (!('Notification' in window)) return 'unsupported';
    const permission = await Notification.requestPermission();
    this.#onChange?.();
    return permission;
  }

  /** Counts `n` error records; `live` ones (not replayed history) alert the user. */
  add(n, { live, level, text }) {
    if (n <= 0) return;
    this.count += n;
    if (live && document.hidden) {
      this.unseen += n;
      this.#startFlash();
      this.#notify(level, text);
    }
    this.#onChange?.();
  }

  /** The user has seen the alerts. */
  acknowledge() {
    this.unseen = 0;
    this.#stopFlash();
    this.#onChange?.();
  }

  reset() {
    this.count = 0;
    this.acknowledge();
  }

  #startFlash() {
    if (this.#flashTimer) return;
    this.#flashTimer = setInterval(() => {
      this.#flashOn = !this.#flashOn;
      document.title = this.#flashOn ? `⚠ ${this.unseen} error${this.unseen === 1 ? '' : 's'} — ${this.#name}` : this.#baseTitle;
    }, FLASH_MS);
  }

  #stopFlash() {
    clearInterval(this.#flashTimer);
    this.#flashTimer = null;
    this.#flashOn = false;
    document.title = this.#baseTitle;
  }

  #notify(level, text) {
    if (!this.notify || this.notificationPermission !== 'granted') return;
    const now = Date.now();
    if (now - this.#lastNotification < NOTIFY_EVERY_MS) return;
    this.#lastNotification = now;
    try {
      const notification = new Notification(`${level} in ${this.#name}`, { body: text.slice(0, 240), tag: `tailgate-${this.#name}` });
      notification.onclick = () => {
        window.focus();
        notification.close();
      };
    } catch {
      // Some browsers allow notifications only from a service worker: the badge and title remain.
    }
  }
}
