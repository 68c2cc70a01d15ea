import { useCallback, useEffect, useState, useSyncExternalStore } from "react";
import { ConversationList } from "../features/conversations";
import { LogoutButton } from "../features/sessions";
import type { Router } from "../lib/router";
import { useSelector } from "../lib/useStore";
import { AccountScreen } from "./AccountScreen";
import { ChatPane } from "./ChatPane";
import { foldUsername, type ChatClient } from "./chatClient";
import { ConnectionBanner, ConnectionStatus } from "./Connection";

/** The conversation list beside the open chat or the account (one at a time on a phone), each
 *  at its own address (lib/router.ts). */
export function Shell({ client, router }: { client: ChatClient; router: Router }) {
  const route = useSyncExternalStore(router.subscribe, router.current);
  const me = useSelector((state) => state.me!);
  const open = useSelector((state) => state.open);
  const [notice, setNotice] = useState<string | null>(null);

  // The address decides what shows: a chat only once its username is known to be someone's.
  useEffect(() => {
    if (route.screen !== "chat") return client.show(null);
    let current = true;
    void client.findPerson(route.peer).then((problem) => {
      if (!current) return;
      if (problem) {
        setNotice(problem);
        router.go({ screen: "list" }, true);
      } else {
        client.show(route.peer);
      }
    });
    return () => { current = false; };
  }, [route, client, router]);

  const openChat = useCallback((peer: string) => {
    setNotice(null);
    router.go({ screen: "chat", peer });
  }, [router]);

  const start = useCallback(async (name: string) => {
    const problem = await client.findPerson(name);
    if (!problem) openChat(foldUsername(name));
    return problem;
  }, [client, openChat]);

  const logOut = useCallback(async () => {
    await client.session.logOut();
    router.go({ screen: "list" }, true);
  }, [client, router]);

  const back = useCallback(() => router.back(), [router]);
  const peer = route.screen === "chat" && open === route.peer ? route.peer : null;

  return (
    <div className="shell" data-view={route.screen === "list" ? "list" : "detail"}>
      <header className="top">
        <h1>Secure Link</h1>
        <ConnectionStatus />
        <button type="button" className="secondary" onClick={() => router.go({ screen: "account" })}
                aria-current={route.screen === "account" ? "page" : undefined}>Account</button>
        <LogoutButton onConfirm={logOut} />
      </header>
      <ConnectionBanner onRetry={client.reconnect} />
      <ConversationList me={me.username} open={peer} onOpen={openChat} onStart={start} onRetry={client.loadConversations}
                        notice={notice} onDismissNotice={() => setNotice(null)} />
      <main className="detail">
        {route.screen === "account" ? <AccountScreen client={client} me={me} onClose={back} />
          : peer ? <ChatPane key={peer} peer={peer} me={me.username} client={client} onBack={back} />
          : <p className="placeholder">{route.screen === "chat" ? "Opening…" : "Pick a conversation, or start one with a username."}</p>}
      </main>
    </div>
  );
}
