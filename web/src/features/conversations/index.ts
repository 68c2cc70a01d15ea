export { ConversationList } from "./components/ConversationList";
