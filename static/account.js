// The buyer's own things: Buy, Start and Pay buttons, the time left to pay, the simulated
// provider's Pay, and signing out everywhere. Uses api() from sprig.js.
'use strict';

(function () {
  const status = document.querySelector('[data-action-status]');
  const tell = (text, ok) => { if (status) { status.textContent = text; status.classList.toggle('ok', Boolean(ok)); } };
  const signIn = () => location.assign(`/login?next=${encodeURIComponent(location.pathname).replace(/%2F/g, '/')}`);

  async function act(button, method, path) {
    button.disabled = true;
    let answer;
    try { answer = await api(method, path); } catch (e) { answer = {msg: 'Network error: check your connection and try again.'}; }
    if (answer.code === 401) { signIn(); return null; }
    if (answer.code !== 100) { tell(answer.msg); button.disabled = false; return null; }
    return answer;
  }

  async function checkout(button, orderId) {
    const answer = await act(button, 'POST', `/api/v1/orders/${orderId}/checkout`);
    if (answer) location.assign(answer.redirect);
  }

  document.querySelectorAll('[data-checkout]').forEach(button => {
    button.addEventListener('click', () => checkout(button, button.dataset.checkout));
  });
  document.querySelectorAll('[data-buy]').forEach(button => {
    button.addEventListener('click', async () => {
      const answer = await act(button, 'POST', `/api/v1/courses/${button.dataset.buy}/buy`);
      if (answer) checkout(button, answer.result.id);
    });
  });
  document.querySelectorAll('[data-start]').forEach(button => {
    button.addEventListener('click', async () => {
      if (await act(button, 'POST', `/api/v1/courses/${button.dataset.start}/start`)) location.assign('/my/courses');
    });
  });
  document.querySelectorAll('[data-simulated-pay]').forEach(button => {
    button.addEventListener('click', async () => {
      if (await act(button, 'POST', `/api/v1/orders/${button.dataset.simulatedPay}/pay`)) location.assign(button.dataset.back);
    });
  });
  document.querySelectorAll('[data-logout-all]').forEach(button => {
    button.addEventListener('click', async () => {
      if (await act(button, 'POST', '/api/v1/user/logout/all')) location.assign('/');
    });
  });

  // "Waiting for payment: 14:59 left", counting down; at zero the order is being cancelled.
  const clocks = [...document.querySelectorAll('[data-expires]')];
  const pad = n => String(n).padStart(2, '0');
  function tick() {
    for (const clock of clocks) {
      const left = Math.max(0, Math.floor((Date.parse(clock.dataset.expires) - Date.now()) / 1000));
      clock.textContent = left > 0 ? `${Math.floor(left / 60)}:${pad(left % 60)} left` : 'time is up: being cancelled';
      const pay = clock.closest('[data-order]')?.querySelector('[data-checkout]');
      if (pay && left === 0) pay.disabled = true;
    }
  }
  if (clocks.length) { tick(); setInterval(tick, 1000); }
})();
