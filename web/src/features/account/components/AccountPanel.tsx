import type { ReactNode } from "react";

interface AccountPanelProps {
  onClose: () => void;
  sections: ReactNode;  // profile, invites, blocks, notifications, sessions, phrase, leaving
}

/** The account, one section after another (logout is in the top bar, always in reach). */
export function AccountPanel({ onClose, sections }: AccountPanelProps) {
  return (
    <section className="account" aria-labelledby="account-title">
      <header>
        <button type="button" className="back secondary" onClick={onClose} aria-label="Back to conversations">←</button>
        <h2 id="account-title">Account</h2>
      </header>
      {sections}
    </section>
  );
}
