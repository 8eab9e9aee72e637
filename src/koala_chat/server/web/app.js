// @ts-check
// The chat page's composition root: the store of conversations, the page's
// controls and the controller that joins them to the server's API.

import { Controller } from "./controller.js";
import { browserStorage, Store } from "./store.js";
import { findControls } from "./view.js";

new Controller(new Store(browserStorage()), findControls(document)).start();
