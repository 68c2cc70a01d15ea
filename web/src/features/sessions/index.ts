export { AccountPanel } from "./components/AccountPanel";
export { LogoutButton } from "./components/LogoutButton";
