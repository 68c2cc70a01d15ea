export { ChatView } from "./components/ChatView";
export { Composer } from "./components/Composer";
