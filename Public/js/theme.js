// Light and dark themes: the system setting by default, or the user's choice (kept in localStorage).

const KEY = 'tailgate.theme';
const CHOICES = ['auto', 'light', 'dark'];
const LABELS = { auto: '◐ auto', light: '☀ light', dark: '☾ dark' };

function stored() {
  try {
    const value = localStorage.getItem(KEY);
    return CHOICES.includes(value) ? value : 'auto';
  } catch {
    return 'auto';
  }
}

function apply(choice) {
  if (choice === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
}

/** Applies the stored theme and makes `button` cycle auto → light → dark; `onChange` after a switch. */
export function setUpTheme(button, onChange) {
  let choice = stored();
  apply(choice);
  if (!button) return;
  const label = () => {
    button.textContent = LABELS[choice];
    button.title = `Theme: ${choice} (click to change)`;
  };
  label();
  button.addEventListener('click', () => {
    choice = CHOICES[(CHOICES.indexOf(choice) + 1) % CHOICES.length];
    try {
      localStorage.setItem(KEY, choice);
    } catch {
      // Private mode: the choice lasts for this page only.
    }
    apply(choice);
    label();
    onChange?.();
  });
}
