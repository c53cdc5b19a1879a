// Follows one export with the unmodified `centrifuge` client from npm:
// connects, waits for the server-side subscriptions, creates the job, and
// prints what arrived on the user's channels as one JSON object.
//
// usage: node follow_job.mjs SERVER_URL API_KEY SOURCE_URL
import { Centrifuge } from "centrifuge";
import WebSocket from "ws";

const [server, apiKey, source] = process.argv.slice(2);
const wsUrl = server.replace(/^http/, "ws") + "/connection/websocket";
const received = [];
const subscribed = [];
let connectedClient = null;

const fail = (message) => {
  console.error(message);
  process.exit(1);
};
const timer = setTimeout(() => fail(`timed out; received ${JSON.stringify(received)}`), 30000);

async function getToken() {
  const response = await fetch(`${server}/api/public/auth/socket`, {
    method: "POST",
    headers: { "X-AUTH-TOKEN": apiKey },
  });
  if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
  return (await response.json()).token;
}

const client = new Centrifuge(wsUrl, { websocket: WebSocket, getToken });

client.on("connected", (ctx) => {
  connectedClient = ctx.client;
});

client.on("subscribed", async (ctx) => {
  subscribed.push(ctx.channel);
  if (subscribed.length !== 5) return;
  const response = await fetch(`${server}/api/v3/job`, {
    method: "POST",
    headers: { "X-AUTH-TOKEN": apiKey, "Content-Type": "application/json" },
    body: JSON.stringify({ url: source }),
  });
  if (response.status !== 201) fail(`job creation answered ${response.status}`);
});

client.on("publication", (ctx) => {
  received.push({ channel: ctx.channel, offset: ctx.offset, data: ctx.data });
  if (ctx.data.event === "job.finished" || ctx.data.event === "job.failed") {
    clearTimeout(timer);
    console.log(JSON.stringify({ client: connectedClient, subscribed, received }));
    client.disconnect();
    process.exit(0);
  }
});

client.on("disconnected", (ctx) => {
  if (ctx.code !== 0) fail(`disconnected: ${ctx.code} ${ctx.reason}`);
});

client.connect();
