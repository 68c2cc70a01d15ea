import { useCallback } from "react";
import { AttachButton, AttachmentView, StagedFile, UploadProgress } from "../features/attachments";
import { BlockControl } from "../features/blocks";
import { ChatView, Composer } from "../features/chat";
import { TimerControl, TimerNotice } from "../features/timers";
import type { FileInfo } from "../lib/api";
import { blockOf, refusalFor } from "../lib/blocks";
import { timerOff } from "../lib/store";
import { useSelector } from "../lib/useStore";
import type { ChatClient } from "./chatClient";

interface ChatPaneProps {
  peer: string;
  me: string;
  client: ChatClient;
  onBack: () => void;
}

const renderAttachment = (file: FileInfo) => <AttachmentView file={file} />;

/** One conversation, put together from the features: the chat, its timer, its attachments, a block. */
export function ChatPane({ peer, me, client, onBack }: ChatPaneProps) {
  const timer = useSelector((state) => state.timers[peer] ?? timerOff);
  const block = useSelector((state) => blockOf(state.blocks, peer));
  const refusal = refusalFor(block, peer);
  const files = useCallback((to: string, picked: File[]) => {
    if (!blockOf(client.store.getState().blocks, to)) client.stage(to, picked[0]);
  }, [client]);
  const loadTimer = useCallback(() => client.loadTimer(peer), [client, peer]);
  const setTimer = useCallback((seconds: number) => client.setTimer(peer, seconds), [client, peer]);
  return (
    <ChatView peer={peer} me={me} clock={client.clock} onBack={onBack} onRead={client.read} onLoad={client.loadHistory}
              onDelete={client.deleteMessage} onFiles={files} onSavePlace={client.savePlace}
              renderAttachment={renderAttachment}
              timerControl={<TimerControl setting={timer} me={me} onOpen={loadTimer} onSave={setTimer} />}
              blockControl={<BlockControl peer={peer} state={block} onBlock={client.blocking.block} onUnblock={client.blocking.unblock} />}
              timerNotice={<TimerNotice setting={timer} me={me} />}
              composer={<Composer peer={peer} onDraft={client.setDraft} onSend={client.send} onFiles={files} refusal={refusal}
                                  attachControl={<AttachButton peer={peer} onFiles={files} refused={refusal !== null} />}
                                  staged={<StagedFile peer={peer} onRemove={client.unstage} />}
                                  progress={<UploadProgress peer={peer} onCancel={client.cancelUpload}
                                                            onDismiss={client.dismissProblem} />} />} />
  );
}
