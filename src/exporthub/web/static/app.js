// The exporthub dashboard: sign in with an API key, start exports, and show
// everything the server pushes on the user's dashboard and notification
// channels. The page never polls: the server sends a complete_update as soon
// as the WebSocket connects (and again after every reconnect), then every
// change as it happens.
"use strict";

(() => {
  const KEY_STORAGE = "exporthub.apiKey";
  const API_KEY_HEADER = "X-AUTH-TOKEN";
  const SOCKET_PATH = "/connection/websocket";
  const TOKEN_PATH = "/api/public/auth/socket";
  const JOB_PATH = "/api/v3/job";
  const MAX_RECONNECT_DELAY_MS = 5000;
  const TOAST_LIFETIME_MS = 6000;
  const MAX_TOASTS = 3;
  const STICKY_LEVELS = new Set(["warning", "error"]);

  const STATUS_LABELS = {
    queueing: "Queued",
    progress: "Running",
    done: "Done",
    error: "Failed",
    stopped: "Stopped",
  };
  const PLAN_STATUS_LABELS = {
    created: "Active",
    expired: "Expired",
    canceled: "Canceled",
    none: "Not subscribed",
  };

  const $ = (id) => document.getElementById(id);
  const numbers = new Intl.NumberFormat();

  const ui = {
    connection: $("connection"),
    signOut: $("sign-out"),
    signIn: $("sign-in"),
    signInForm: $("sign-in-form"),
    apiKey: $("api-key"),
    signInError: $("sign-in-error"),
    signInButton: $("sign-in-button"),
    dashboard: $("dashboard"),
    offline: $("offline"),
    exportForm: $("export-form"),
    exportUrl: $("export-url"),
    exportReplies: $("export-replies"),
    exportButton: $("export-button"),
    exportError: $("export-error"),
    exportDone: $("export-done"),
    planName: $("plan-name"),
    planStatus: $("plan-status"),
    usagePeriod: $("usage-period"),
    usageExports: $("usage-exports"),
    usageExportsMeter: $("usage-exports-meter"),
    usageItems: $("usage-items"),
    usageItemsMeter: $("usage-items-meter"),
    activity: $("activity"),
    activityEmpty: $("activity-empty"),
    toasts: $("toasts"),
    jobTemplate: $("job-template"),
  };

  // guid -> the activity row as the server last described it.
  const jobs = new Map();
  let apiKey = null;
  let client = null;
  let everConnected = false;

  // -- talking to the API ---------------------------------------------------

  class Unreachable extends Error {}

  async function api(method, path, key, body) {
    const headers = { [API_KEY_HEADER]: key };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new Unreachable(String(error));
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    return { status: response.status, ok: response.ok, data };
  }

  function serverWords(answer) {
    const text = (answer.data && answer.data.error) || `HTTP ${answer.status}`;
    return sentence(text);
  }

  function sentence(text) {
    const trimmed = String(text).trim();
    const first = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(first) ? first : `${first}.`;
  }

  // -- signing in and out ---------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const key = ui.apiKey.value.trim();
    ui.signInError.textContent = "";
    if (!key) {
      ui.signInError.textContent = "Enter your API key to sign in.";
      ui.apiKey.focus();
      return;
    }
    ui.signInButton.disabled = true;
    try {
      const answer = await api("POST", TOKEN_PATH, key);
      if (answer.status === 401) {
        ui.signInError.textContent =
          "That API key was not accepted. Check that you copied all of it, " +
          "or create a new one with exporthub user create EMAIL.";
        ui.apiKey.select();
        return;
      }
      if (!answer.ok) {
        ui.signInError.textContent =
          `The server could not sign you in: ${serverWords(answer)} Try again.`;
        return;
      }
      ui.apiKey.value = "";
      sessionStorage.setItem(KEY_STORAGE, key);
      start(key, answer.data.token);
    } catch (error) {
      ui.signInError.textContent =
        "The server cannot be reached. Check that it is running, then try again.";
    } finally {
      ui.signInButton.disabled = false;
    }
  }

  function signOut(reason) {
    sessionStorage.removeItem(KEY_STORAGE);
    apiKey = null;
    if (client) {
      const old = client;
      client = null;
      old.disconnect();
    }
    jobs.clear();
    ui.activity.replaceChildren();
    ui.dashboard.hidden = true;
    ui.signOut.hidden = true;
    ui.connection.hidden = true;
    ui.offline.hidden = true;
    ui.signIn.hidden = false;
    ui.signInError.textContent = reason || "";
    ui.apiKey.focus();
  }

  function start(key, firstToken) {
    apiKey = key;
    everConnected = false;
    ui.signIn.hidden = true;
    ui.dashboard.hidden = false;
    ui.signOut.hidden = false;
    ui.connection.hidden = false;
    showConnection("connecting");
    renderActivity();
    connect(firstToken);
    ui.exportUrl.focus();
  }

  // -- the live connection --------------------------------------------------

  function socketAddress() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${SOCKET_PATH}`;
  }

  function connect(firstToken) {
    const key = apiKey;
    const getToken = async () => {
      // Unreachable propagates: the client retries with its backoff.
      const answer = await api("POST", TOKEN_PATH, key);
      if (answer.status === 401) {
        signOut("Your API key is no longer accepted. Sign in again.");
        throw new Centrifuge.UnauthorizedError("the API key was rejected");
      }
      if (!answer.ok) throw new Error(`token endpoint answered ${answer.status}`);
      return answer.data.token;
    };
    const centrifuge = new Centrifuge(socketAddress(), {
      token: firstToken || "",
      getToken,
      maxReconnectDelay: MAX_RECONNECT_DELAY_MS,
    });
    centrifuge.on("connecting", () => {
      if (client !== centrifuge) return;
      showConnection(everConnected ? "offline" : "connecting");
    });
    centrifuge.on("connected", () => {
      if (client !== centrifuge) return;
      everConnected = true;
      showConnection("connected");
    });
    centrifuge.on("error", (ctx) => {
      // A failed first attempt means the server is down, not just slow.
      if (client !== centrifuge || centrifuge.state !== "connecting") return;
      if (ctx.type === "transport" || ctx.type === "connectToken") {
        showConnection("offline");
      }
    });
    centrifuge.on("disconnected", (ctx) => {
      if (client !== centrifuge) return;
      showConnection("disconnected", ctx.reason);
    });
    centrifuge.on("publication", (ctx) => {
      if (client !== centrifuge) return;
      const namespace = ctx.channel.split(":")[0];
      if (namespace === "user_dashboard_channel") onDashboard(ctx.data);
      else if (namespace === "user_notifications_channel") onNotification(ctx.data);
    });
    client = centrifuge;
    centrifuge.connect();
  }

  function showConnection(state, reason) {
    const words = {
      connecting: "Connecting…",
      connected: "Live",
      offline: "Offline, reconnecting…",
      disconnected: `Disconnected${reason ? `: ${reason}` : ""}`,
    };
    ui.connection.dataset.state = state;
    ui.connection.textContent = words[state];
    ui.offline.hidden = state !== "offline";
  }

  // -- channel messages -----------------------------------------------------

  function onDashboard(message) {
    const payload = message.payload || {};
    switch (message.type) {
      case "complete_update":
        jobs.clear();
        for (const row of payload.activity || []) jobs.set(row.id, row);
        renderActivity();
        if (payload.usage) renderUsage(payload.usage);
        if (payload.subscription) renderSubscription(payload.subscription);
        break;
      case "new_activity":
        jobs.set(payload.id, payload);
        renderActivity();
        break;
      case "activity_update": {
        const known = jobs.get(payload.guid) || { id: payload.guid };
        jobs.set(payload.guid, { ...known, ...payload.updates });
        renderActivity();
        break;
      }
      case "usage_stats":
        renderUsage(payload);
        break;
      case "subscription_status":
        renderSubscription(payload);
        break;
      default:
        break;
    }
  }

  function onNotification(message) {
    const payload = message.payload || {};
    toast(payload.title || message.type, payload.message || "", payload.level || "info");
  }

  // -- rendering ------------------------------------------------------------

  function ordered() {
    // Newest first; rows without a creation time (an update that arrived
    // before its job was known) go first as they are the newest news.
    return [...jobs.values()].sort((a, b) =>
      String(b.created_at || "\uffff").localeCompare(String(a.created_at || "\uffff")),
    );
  }

  function renderActivity() {
    const rows = ordered();
    const existing = new Map(
      [...ui.activity.children].map((item) => [item.dataset.guid, item]),
    );
    const items = rows.map((row) => {
      const item = existing.get(row.id) || newJobItem(row.id);
      fillJobItem(item, row);
      return item;
    });
    // Keeps the same elements (and so any keyboard focus) where possible.
    ui.activity.replaceChildren(...items);
    ui.activityEmpty.hidden = rows.length > 0;
  }

  function newJobItem(guid) {
    const item = ui.jobTemplate.content.firstElementChild.cloneNode(true);
    item.dataset.guid = guid;
    const url = item.querySelector(".job-url");
    url.id = `job-${guid}-url`;
    item.querySelector(".job-progress").setAttribute("aria-labelledby", url.id);
    for (const link of item.querySelectorAll(".job-downloads a")) {
      link.setAttribute("aria-describedby", url.id);
    }
    return item;
  }

  function fillJobItem(item, row) {
    const status = row.status || "queueing";
    item.dataset.status = status;
    item.querySelector(".job-platform").textContent = row.platform || "";
    const badge = item.querySelector(".job-status");
    badge.textContent = STATUS_LABELS[status] || status;
    const url = item.querySelector(".job-url");
    url.textContent = row.url || "";
    setHref(url, row.url);

    const bar = item.querySelector(".job-progress");
    if (typeof row.progress === "number") {
      bar.value = row.progress;
      bar.textContent = `${row.progress}%`;
    } else {
      bar.removeAttribute("value");
      bar.textContent = "";
    }
    bar.hidden = status === "error" || status === "stopped";

    item.querySelector(".job-counts").textContent = counts(row);
    const running = status === "progress" || status === "queueing";
    item.querySelector(".job-duration").textContent = row.duration
      ? `${running ? "Running for" : "Took"} ${row.duration}`
      : "";

    const error = item.querySelector(".job-error");
    error.textContent = row.error ? sentence(row.error) : "";
    error.hidden = !row.error;

    const downloads = item.querySelector(".job-downloads");
    const link = status === "done" ? row.download_link : null;
    downloads.hidden = !link;
    setHref(item.querySelector(".job-xlsx"), link);
    setHref(item.querySelector(".job-json"), link && link.replace(/\.xlsx$/, ".json"));
  }

  function counts(row) {
    const done = row.exportedItems || 0;
    const noun = (n) => (n === 1 ? "comment" : "comments");
    if (typeof row.totalItems === "number") {
      const percent = typeof row.progress === "number" ? ` (${row.progress}%)` : "";
      return `${numbers.format(done)} of ${numbers.format(row.totalItems)} ${noun(row.totalItems)}${percent}`;
    }
    return `${numbers.format(done)} ${noun(done)}`;
  }

  function setHref(link, address) {
    // Only web addresses become links: a javascript: URL typed by someone
    // must never run when clicked.
    if (address && /^https?:\/\//i.test(address)) link.href = address;
    else link.removeAttribute("href");
  }

  function renderUsage(usage) {
    const allowance = usage.allowance || {};
    ui.usagePeriod.textContent = usage.period || "";
    ui.usageExports.textContent =
      `${numbers.format(usage.exports)} of ${numbers.format(allowance.exports)}`;
    ui.usageItems.textContent =
      `${numbers.format(usage.items)} of ${numbers.format(allowance.items)}`;
    setMeter(ui.usageExportsMeter, usage.exports, allowance.exports);
    setMeter(ui.usageItemsMeter, usage.items, allowance.items);
  }

  function setMeter(meter, used, allowed) {
    meter.max = Math.max(1, allowed || 1);
    meter.high = meter.max * 0.9;
    meter.optimum = 0;
    meter.value = Math.min(used || 0, meter.max);
  }

  function renderSubscription(subscription) {
    const plan = String(subscription.plan || "free");
    ui.planName.textContent = plan.charAt(0).toUpperCase() + plan.slice(1);
    let status = PLAN_STATUS_LABELS[subscription.status] || subscription.status;
    if (subscription.status === "created" && subscription.ends_at) {
      status += `, until ${new Date(subscription.ends_at).toLocaleDateString()}`;
    }
    ui.planStatus.textContent = status;
  }

  function toast(title, text, level) {
    const box = document.createElement("div");
    box.className = "toast";
    box.dataset.level = level;
    const heading = document.createElement("strong");
    heading.className = "toast-title";
    heading.textContent = title;
    const body = document.createElement("p");
    body.className = "toast-message";
    body.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.textContent = "Dismiss";
    close.setAttribute("aria-label", `Dismiss: ${title}`);
    close.addEventListener("click", () => box.remove());
    box.append(heading, body, close);
    ui.toasts.append(box);
    while (ui.toasts.children.length > MAX_TOASTS) ui.toasts.firstElementChild.remove();
    if (!STICKY_LEVELS.has(level)) setTimeout(() => box.remove(), TOAST_LIFETIME_MS);
  }

  // -- starting an export ---------------------------------------------------

  async function startExport(event) {
    event.preventDefault();
    ui.exportError.textContent = "";
    ui.exportDone.textContent = "";
    const url = ui.exportUrl.value.trim();
    if (!url) {
      ui.exportError.textContent = "Paste the address of a post or video first.";
      ui.exportUrl.focus();
      return;
    }
    ui.exportButton.disabled = true;
    try {
      const answer = await api("POST", JOB_PATH, apiKey, {
        url,
        options: { replies: ui.exportReplies.checked },
      });
      if (answer.status === 201) {
        ui.exportUrl.value = "";
        ui.exportDone.textContent = "Export queued. It appears under Activity.";
        return;
      }
      ui.exportError.textContent = exportRefusal(answer);
      if (answer.status === 401) {
        signOut("Your API key is no longer accepted. Sign in again.");
      } else {
        ui.exportUrl.focus();
      }
    } catch (error) {
      ui.exportError.textContent =
        "The server cannot be reached, so the export was not started. " +
        "Try again when the page shows Live.";
    } finally {
      ui.exportButton.disabled = false;
    }
  }

  function exportRefusal(answer) {
    switch (answer.status) {
      case 422:
        // The server's own words already name the URL and what it accepts.
        if (answer.data && answer.data.error_code === "unsupported_url") {
          return serverWords(answer);
        }
        return `The export was refused. ${serverWords(answer)}`;
      case 402:
        return `Your monthly allowance is used up. ${serverWords(answer)}`;
      case 401:
        return "Your API key is no longer accepted. Sign in again.";
      case 413:
        return "That address is too long to export.";
      default:
        return `The export was not started: ${serverWords(answer)} Try again in a moment.`;
    }
  }

  // -- wiring ---------------------------------------------------------------

  ui.signInForm.addEventListener("submit", signIn);
  ui.exportForm.addEventListener("submit", startExport);
  ui.signOut.addEventListener("click", () => signOut(""));

  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) start(stored, null);
  else ui.apiKey.focus();
})();
