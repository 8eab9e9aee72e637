// @ts-check
// The settings sheet's Connection choices: one radio per dialect the server
// offers, each named in plain words and explained in a line (the README's
// "Which dialect?" says the same at length).

/** @type {Record<string, {name: string, line: string}>} */
const CONNECTIONS = {
  auto: {
    name: "Automatic",
    line: "Tries the classic request first, then the chat page's; remembers what works.",
  },
  history: {
    name: "Classic",
    line: "The original request: your question, with the earlier turns beside it.",
  },
  messages: {
    name: "Chat page",
    line: "What koala.sh's own chat page sends: the whole conversation as messages.",
  },
  api: {
    name: "Official API",
    line: "The paid API, with the server's key: each reply costs a credit.",
  },
};

/**
 * @param {string} protocol
 * @returns {{name: string, line: string}} how the page speaks of `protocol`
 */
export function connectionOf(protocol) {
  return CONNECTIONS[protocol] ?? { name: protocol, line: "A connection this server offers." };
}

/**
 * Draws one radio per protocol into `box`.
 *
 * @param {HTMLElement} box
 * @param {string[]} protocols what the server offers, in its order
 * @param {string | null} serverDefault the server's own, marked as such
 */
export function renderConnections(box, protocols, serverDefault) {
  box.replaceChildren(
    ...protocols.map((protocol) => {
      const { name, line } = connectionOf(protocol);
      const label = document.createElement("label");
      label.className = "choice";
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "connection";
      radio.value = protocol;
      const text = document.createElement("span");
      text.className = "choice-text";
      const title = document.createElement("span");
      title.className = "choice-name";
      title.id = `connection-${protocol}-name`;
      title.textContent = name;
      const explained = document.createElement("span");
      explained.className = "choice-line";
      explained.id = `connection-${protocol}-line`;
      explained.textContent = protocol === serverDefault ? `${line} The server's default.` : line;
      // Named by its name alone; the line describes it.
      radio.setAttribute("aria-labelledby", title.id);
      radio.setAttribute("aria-describedby", explained.id);
      text.append(title, explained);
      label.append(radio, text);
      return label;
    }),
  );
}

/**
 * Checks the radio of `protocol` in `box` (none when it is not offered).
 *
 * @param {HTMLElement} box
 * @param {string} protocol
 */
export function checkConnection(box, protocol) {
  for (const radio of box.querySelectorAll("input[type=radio]")) {
    if (radio instanceof HTMLInputElement) radio.checked = radio.value === protocol;
  }
}

/**
 * @param {HTMLElement} box
 * @returns {string} the protocol checked in `box` ("" for none)
 */
export function checkedConnection(box) {
  const radio = box.querySelector("input[type=radio]:checked");
  return radio instanceof HTMLInputElement ? radio.value : "";
}
