import { useState } from "react";
import { AccountPanel, AvatarControl, DeleteAccountSection, NotificationSettings, PhraseSection, ProfileSection } from "../features/account";
import { FilePicker } from "../features/attachments";
import { BlockedList } from "../features/blocks";
import { InviteSection } from "../features/invites";
import { SessionList } from "../features/sessions";
import type { User } from "../lib/api";
import type { ChatClient } from "./chatClient";

/** The account screen, put together from the features: what others see of the person, whom they
 *  invite and block, how they are told of messages, where they are logged in, their phrase, and
 *  leaving (last, after everything that does not erase). */
export function AccountScreen({ client, me, onClose }: { client: ChatClient; me: User; onClose: () => void }) {
  const [sessionsAsked, setSessionsAsked] = useState(0);  // a new phrase ends the other sessions: list them again
  return (
    <AccountPanel onClose={onClose} sections={<>
      <ProfileSection me={me} onDisplayName={client.setDisplayName} avatarControl={
        <AvatarControl onAvatar={client.setAvatar} picker={(onPick, busy) =>
          <FilePicker label="Change avatar" accept="image/*" disabled={busy} onPick={onPick} />} />} />
      <InviteSection />
      <BlockedList onUnblock={client.blocking.unblock} onRetry={client.blocking.load} />
      <NotificationSettings prefs={client.prefs} permission={client.notifier.permission}
                            onEnable={client.enableNotifications} onSound={client.setSound} />
      <SessionList key={sessionsAsked} />
      <PhraseSection username={me.username} onChange={client.changePhrase} onChanged={() => setSessionsAsked((n) => n + 1)} />
      <DeleteAccountSection username={me.username} onDelete={client.session.deleteAccount} />
    </>} />
  );
}
