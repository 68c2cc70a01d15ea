export { TimerControl } from "./components/TimerControl";
export { TimerNotice } from "./components/TimerNotice";
