export { LogoutButton } from "./components/LogoutButton";
export { SessionList } from "./components/SessionList";
