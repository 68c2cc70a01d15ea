export { AuthForm } from "./components/AuthForm";
