export { BlockControl } from "./components/BlockControl";
export { BlockedList } from "./components/BlockedList";
