import { useEffect, useState } from "react";
import { AuthForm } from "../features/auth";
import { Router } from "../lib/router";
import { StoreContext, useSelector } from "../lib/useStore";
import { ChatClient } from "./chatClient";
import { Shell } from "./Shell";

/** Starts the session's socket while someone is logged in; the login form otherwise. */
function Gate({ client, router }: { client: ChatClient; router: Router }) {
  const loggedIn = useSelector((state) => state.me !== null);
  useEffect(() => (loggedIn ? client.start() : undefined), [loggedIn, client]);
  return loggedIn ? <Shell client={client} router={router} /> : <AuthForm onAuthenticated={client.signIn} />;
}

/** The app: one router and one client for the page's life. */
export function App() {
  const [router] = useState(() => new Router(window.history));
  const [client] = useState(() => new ChatClient((peer) => router.go({ screen: "chat", peer })));
  const [checked, setChecked] = useState(false);

  useEffect(() => {
    void client.checkSession().finally(() => setChecked(true));
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
