export { AttachButton } from "./components/AttachButton";
export { AttachmentView } from "./components/AttachmentView";
