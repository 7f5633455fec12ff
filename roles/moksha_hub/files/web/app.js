// The live widgets: STOMP over WebSocket to RabbitMQ (through nginx at /ws), with the
// restricted browser user from /config.js. Chat on topic "chat", metrics on "metrics".
(function () {
  "use strict";
  const status = document.getElementById("status");
  const messages = document.getElementById("messages");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";

  function addMessage(body) {
    let msg;
    try { msg = JSON.parse(body); } catch (e) { msg = { user: "?", text: body }; }
    const li = document.createElement("li");
    li.className = "chat-message";
    li.textContent = (msg.user || "?") + ": " + (msg.text !== undefined ? msg.text : body);
    messages.appendChild(li);
    while (messages.children.length > 200) messages.removeChild(messages.firstChild);
  }

  const graph = new Chart(document.getElementById("metrics-graph"), {
    type: "line",
    data: { labels: [], datasets: [
      { label: "load (1 min)", data: [], yAxisID: "load" },
      { label: "memory used %", data: [], yAxisID: "mem" },
    ] },
    options: { animation: false, scales: { load: { position: "left", min: 0 }, mem: { position: "right", min: 0, max: 100 } } },
  });

  function addPoint(body) {
    const m = JSON.parse(body);
    const data = graph.data;
    data.labels.push(new Date(m.time * 1000).toLocaleTimeString());
    data.datasets[0].data.push(m.load1);
    data.datasets[1].data.push(m.mem_used_pct);
    if (data.labels.length > 60) { data.labels.shift(); data.datasets.forEach(d => d.data.shift()); }
    graph.update();
  }

  const client = new StompJs.Client({
    brokerURL: scheme + location.host + "/ws",
    connectHeaders: { login: window.CRUST_BROKER.login, passcode: window.CRUST_BROKER.passcode, host: "/" },
    reconnectDelay: 2000,
  });
  client.onConnect = function () {
    status.textContent = "live";
    status.className = "status live";
    client.subscribe("/topic/chat", m => addMessage(m.body));
    client.subscribe("/topic/metrics", m => addPoint(m.body));
  };
  client.onWebSocketClose = function () { status.textContent = "reconnecting…"; status.className = "status"; };
  client.activate();

  document.getElementById("chat-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const text = document.getElementById("chat-text");
    if (!text.value || !client.connected) return;
    client.publish({ destination: "/topic/chat", body: JSON.stringify({ user: document.getElementById("chat-user").value, text: text.value }) });
    text.value = "";
  });

  async function refreshStats() {
    try {
      const r = await fetch("stats", { cache: "no-store" });
      document.getElementById("stats").textContent = JSON.stringify((await r.json()).counts, null, 1);
    } catch (e) { /* the hub is starting */ }
  }
  setInterval(refreshStats, 2000);
  refreshStats();
})();
