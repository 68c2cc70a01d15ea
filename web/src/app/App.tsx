import { useEffect, useRef, useState } from "react";
import { AuthForm, inviteFromAddress } from "../features/auth";
import { Router } from "../lib/router";
import { StoreContext, useSelector } from "../lib/useStore";
import { ChatClient } from "./chatClient";
import { Shell } from "./Shell";

/** Starts the session's socket while someone is logged in; the login form otherwise. An invite
 *  link's code stays in the address until someone is logged in, and no longer. */
function Gate({ client, router }: { client: ChatClient; router: Router }) {
  const loggedIn = useSelector((state) => state.me !== null);
  const ended = useSelector((state) => state.ended);
  const invite = useRef(inviteFromAddress(location.search));
  useEffect(() => {
    if (loggedIn) invite.current = "";
    if (loggedIn && location.search) router.go(router.current(), true);
    return loggedIn ? client.start() : undefined;
  }, [loggedIn, client, router]);
  return loggedIn ? <Shell client={client} router={router} />
    : <AuthForm onAuthenticated={client.session.signIn} invite={invite.current} notice={ended} />;
}

/** The app: one router and one client for the page's life. */
export function App() {
  const [router] = useState(() => new Router(window.history));
  const [client] = useState(() => new ChatClient((peer) => router.go({ screen: "chat", peer })));
  const [checked, setChecked] = useState(false);

  useEffect(() => {
    void client.session.check().finally(() => setChecked(true));
  }, [client]);

  useEffect(() => {
    window.addEventListener("popstate", router.popped);
    return () => window.removeEventListener("popstate", router.popped);
  }, [router]);

  if (!checked) return null;
  return (
    <StoreContext.Provider value={client.store}>
      <Gate client={client} router={router} />
    </StoreContext.Provider>
  );
}
