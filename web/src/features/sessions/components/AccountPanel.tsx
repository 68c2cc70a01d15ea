import type { ReactNode } from "react";
import type { User } from "../../../lib/api";
import { Avatar } from "../../../components/Avatar";
import { SessionList } from "./SessionList";

interface AccountPanelProps {
  me: User;
  avatarControl: ReactNode;
  onClose: () => void;
}

/** The account: avatar, and sessions with revoke (logout is in the top bar, always in reach). */
export function AccountPanel({ me, avatarControl, onClose }: AccountPanelProps) {
  return (
    <section className="account" aria-labelledby="account-title">
      <header>
        <button type="button" className="back secondary" onClick={onClose} aria-label="Back to conversations">←</button>
        <h2 id="account-title">Account</h2>
      </header>
      <div className="me">
        <Avatar name={me.username} url={me.avatar_url} />
        <span>{me.display_name || me.username}</span>
        {avatarControl}
      </div>
      <SessionList />
    </section>
  );
}
