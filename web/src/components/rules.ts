/** The phrase rules as people read them: the login form, a new phrase, and the server's 422 agree. */
export const PHRASE_RULES = "12 to 256 characters, at least 3 words, and not containing your username.";
