export { AuthForm } from "./components/AuthForm";
export { inviteFromAddress } from "./registration";
