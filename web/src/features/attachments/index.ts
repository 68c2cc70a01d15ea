export { AttachButton } from "./components/AttachButton";
export { AttachmentView } from "./components/AttachmentView";
export { FilePicker } from "./components/FilePicker";
export { StagedFile } from "./components/StagedFile";
export { UploadProgress } from "./components/UploadProgress";
