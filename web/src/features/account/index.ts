export { AccountPanel } from "./components/AccountPanel";
export { AvatarControl } from "./components/AvatarControl";
export { NotificationSettings } from "./components/NotificationSettings";
export { ProfileSection } from "./components/ProfileSection";
