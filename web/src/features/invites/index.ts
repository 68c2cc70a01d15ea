export { InviteSection } from "./components/InviteSection";
