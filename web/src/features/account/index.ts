export { AccountPanel } from "./components/AccountPanel";
export { AvatarControl } from "./components/AvatarControl";
export { DeleteAccountSection } from "./components/DeleteAccountSection";
export { NotificationSettings } from "./components/NotificationSettings";
export { PhraseSection } from "./components/PhraseSection";
export { ProfileSection } from "./components/ProfileSection";
