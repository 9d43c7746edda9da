// The flash-sale page: a countdown to the start, the stock kept fresh, the press, then polling the
// result every [seckill] poll_interval seconds until a terminal answer; network errors are retried.
'use strict';

(function () {
  const root = document.querySelector('[data-seckill]');
  if (!root) return;
  const item = Number(root.dataset.item);
  const starts = Date.parse(root.dataset.starts);
  const ends = Date.parse(root.dataset.ends);
  const poll = Number(root.dataset.poll) * 1000;
  const button = root.querySelector('[data-press]');
  const countdown = root.querySelector('[data-countdown]');
  const outcome = root.querySelector('[data-outcome]');
  const stock = root.querySelector('[data-stock]');
  const payButton = root.querySelector('[data-pay]');
  const RETRIES = 3;  // network errors in a row before giving up
  const stockState = root.querySelector('[data-stock-state]');
  let state = root.dataset.state;
  let pressed = false;
  let mine = null;  // this buyer's own outcome: 'queued', 'won' or 'paid'; the button then stays theirs

  const signIn = () => location.assign(`/login?next=${encodeURIComponent(location.pathname).replace(/%2F/g, '/')}`);
  const say = (text, kind) => { outcome.textContent = text; outcome.className = `outcome ${kind || ''}`; };
  const pad = n => String(n).padStart(2, '0');

  async function call(method, path, body) {
    const options = {method, credentials: 'same-origin', headers: {}};
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const res = await fetch(path, options);  // throws on network errors
    let data;
    try { data = await res.json(); } catch (e) { data = {code: res.status, msg: `unexpected answer (${res.status})`}; }
    return {status: res.status, data};
  }

  // A call retried after network errors or 5xx answers, up to RETRIES times, `poll` ms apart.
  async function patient(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await call(method, path, body);
        if (answer.status < 500) return answer;
        if (attempt >= RETRIES) return answer;
      } catch (e) {
        if (attempt >= RETRIES) throw e;
      }
      say(`Connection trouble, retrying (${attempt + 1}/${RETRIES})…`, 'pending');
      await new Promise(resolve => setTimeout(resolve, poll));
    }
  }

  function tick() {
    const now = Date.now();
    stockState.textContent = state === 'sold_out' ? 'sold out' : '';
    if (mine) {  // the sale's stock never hides the buyer's own outcome
      button.hidden = true;
      countdown.textContent = '';
      return;
    }
    if (now < starts) {
      const left = Math.ceil((starts - now) / 1000);
      const h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      countdown.textContent = `Starts in ${pad(h)}:${pad(m)}:${pad(s)}`;
      button.disabled = true;
    } else if (now >= ends) {
      countdown.textContent = 'This sale has ended.';
      button.disabled = true;
      button.textContent = 'Ended';
    } else if (state === 'sold_out') {
      countdown.textContent = '';
      button.disabled = true;
      button.textContent = 'Sold out';
    } else {
      countdown.textContent = 'On sale now';
      button.disabled = pressed;
    }
  }

  async function refreshStock() {
    try {
      const {status, data} = await call('GET', `/api/v1/seckill/items/${item}`);
      if (status === 200) {
        stock.textContent = data.result.stock_left;
        state = data.result.state;
        tick();
      }
    } catch (e) { /* the next refresh will tell */ }
  }

  async function follow(taskId) {
    for (;;) {
      await new Promise(resolve => setTimeout(resolve, poll));
      let answer;
      try {
        answer = await patient('GET', `/api/v1/seckill/result?task_id=${encodeURIComponent(taskId)}`);
      } catch (e) {
        say('We lost the connection. Your order is safe if it was won: check again in a moment.', 'error');
        return;
      }
      const {data} = answer;
      if (data.code === 102) say('Queued: waiting for your turn…', 'pending');
      else if (data.code === 103) say('In progress…', 'pending');
      else if (data.code === 100) {
        won(data.order_id);
        refreshStock();
        return;
      } else {
        finish(data);
        return;
      }
    }
  }

  async function press() {
    if (root.dataset.signedIn !== '1') { signIn(); return; }
    pressed = true;
    button.disabled = true;
    say('Sending…', 'pending');
    let answer;
    try {
      answer = await patient('POST', '/api/v1/seckill', {item_id: item});
    } catch (e) {
      say('Could not reach the shop. Please try again.', 'error');
      pressed = false;
      tick();
      return;
    }
    const {status, data} = answer;
    if (status === 401) { signIn(); return; }
    if (status === 202) { queued(data.task_id); return; }
    if (status >= 400) { pressed = false; tick(); }  // not on sale (yet): the button comes back with the sale
    finish(data);
  }

  // A final "no": said, and a sold-out sale shows so on its button.
  function finish(data) {
    mine = null;
    say(data.msg, data.code === 101 ? 'lost' : 'error');
    if (data.msg === 'sold out') { state = 'sold_out'; }
    tick();
  }

  function queued(taskId) {
    mine = 'queued';
    tick();
    say('Queued: your press is in the queue, waiting for your turn…', 'pending');
    follow(taskId);
  }

  function won(orderId) {
    mine = 'won';
    tick();
    say(`You got it! Order #${orderId}: this seat is yours. Pay to keep it.`, 'won');
    payButton.hidden = false;
    payButton.dataset.order = orderId;
  }

  async function pay() {
    payButton.disabled = true;
    let answer;
    try {
      answer = await patient('POST', `/api/v1/orders/${payButton.dataset.order}/pay`);
    } catch (e) {
      say('Could not reach the shop to pay. Please try again.', 'error');
      payButton.disabled = false;
      return;
    }
    const {data} = answer;
    if (data.code === 100) { paid(payButton.dataset.order); }
    else { say(data.msg, 'error'); payButton.disabled = false; }
  }

  function paid(orderId) {
    mine = 'paid';
    tick();
    say(`Paid: order #${orderId} is yours.`, 'won');
    payButton.hidden = true;
  }

  button.addEventListener('click', press);
  payButton.addEventListener('click', pay);
  if (root.dataset.orderStatus === 'paid') paid(root.dataset.order);
  else if (root.dataset.order) won(root.dataset.order);
  else if (root.dataset.task) queued(root.dataset.task);
  tick();
  setInterval(tick, 1000);
  setInterval(refreshStock, Math.max(poll, 2000));
})();
