import { AccountPanel, AvatarControl, NotificationSettings, ProfileSection } from "../features/account";
import { FilePicker } from "../features/attachments";
import { SessionList } from "../features/sessions";
import type { User } from "../lib/api";
import type { ChatClient } from "./chatClient";

/** The account screen, put together from the features. The sections of contract v1.2 (invites,
 *  blocked people, the phrase, deleting the account) are to slot in after Notifications. */
export function AccountScreen({ client, me, onClose }: { client: ChatClient; me: User; onClose: () => void }) {
  return (
    <AccountPanel onClose={onClose} sections={<>
      <ProfileSection me={me} onDisplayName={client.setDisplayName} avatarControl={
        <AvatarControl onAvatar={client.setAvatar} picker={(onPick, busy) =>
          <FilePicker label="Change avatar" accept="image/*" disabled={busy} onPick={onPick} />} />} />
      <NotificationSettings prefs={client.prefs} permission={client.notifier.permission}
                            onEnable={client.enableNotifications} onSound={client.setSound} />
      <SessionList />
    </>} />
  );
}
