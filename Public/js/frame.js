// DOM work batched per animation frame: callers ask for a task to run in the next frame; each task
// runs at most once per frame however often it was requested.

export class FrameScheduler {
  #tasks = new Set();
  #pending = false;

  /** Runs `task` in the next animation frame (once, however many times it is requested). */
  request(task) {
    this.#tasks.add(task);
    if (this.#pending) return;
    this.#pending = true;
    requestAnimationFrame(() => this.#flush());
  }

  #flush() {
    this.#pending = false;
    const tasks = [...this.#tasks];
    this.#tasks.clear();
    for (const task of tasks) {
      try {
        task();
      } catch (error) {
        console.error('tailgate: frame task failed', error);
      }
    }
  }
}

/** The page's scheduler. */
export const frames = new FrameScheduler();
