// Sprig pages: JSON forms with errors next to their fields, the SMS countdown, tabs, sign-out and the home carousel.
// The login cookie is HttpOnly: this script never sees a token, the browser sends it.
'use strict';

async function api(method, path, body) {
  const options = {method, credentials: 'same-origin', headers: {}};
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const res = await fetch(path, options);
  try {
    return await res.json();
  } catch (e) {
    return {code: res.status, msg: `unexpected answer from the server (${res.status})`};
  }
}

function fields(form) {
  const data = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') data[el.name] = el.checked;
    else if (el.value !== '' || el.required) data[el.name] = el.value;
  }
  return data;
}

function report(form, answer, success) {
  form.querySelectorAll('.field-error').forEach(slot => { slot.textContent = ''; });
  form.querySelectorAll('[aria-invalid]').forEach(el => el.removeAttribute('aria-invalid'));
  const status = form.querySelector('.form-status');
  status.textContent = '';
  status.classList.toggle('ok', Boolean(success));
  if (success) { status.textContent = success; return; }
  const errors = answer.errors || {};
  for (const [name, message] of Object.entries(errors)) {
    const slot = form.querySelector(`.field-error[data-for="${name}"]`);
    if (form.elements[name]) form.elements[name].setAttribute('aria-invalid', 'true');
    if (slot) slot.textContent = message;
    else status.textContent += `${name}: ${message} `;
  }
  if (!Object.keys(errors).length) status.textContent = answer.msg;
}

function countdown(button, seconds) {
  const label = button.dataset.label || (button.dataset.label = button.textContent);
  const run = (button.dataset.run = String(Number(button.dataset.run || 0) + 1));  // a newer one stops this
  button.disabled = true;
  const tick = () => {
    if (button.dataset.run !== run) return;
    if (seconds <= 0) {
      button.disabled = false;
      button.textContent = label;
      return;
    }
    button.textContent = `Resend in ${seconds} s`;
    seconds -= 1;
    setTimeout(tick, 1000);
  };
  tick();
}

document.querySelectorAll('form[data-api]').forEach(form => {
  form.addEventListener('submit', async event => {
    event.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const answer = await api('POST', form.dataset.api, fields(form));
      if (answer.code === 100) {
        location.href = form.dataset.next || '/';
        return;
      }
      report(form, answer);
    } catch (e) {
      report(form, {msg: 'Network error: check your connection and try again.'});
    }
    button.disabled = false;
  });
});

document.querySelectorAll('button[data-send-code]').forEach(button => {
  button.addEventListener('click', async () => {
    const form = button.form;
    button.disabled = true;
    let answer;
    try {
      answer = await api('POST', '/api/v1/user/sms', {mobile: form.elements.mobile.value, scene: button.dataset.sendCode});
    } catch (e) {
      answer = {msg: 'Network error: check your connection and try again.'};
    }
    if (answer.code === 100) {
      report(form, answer, 'Sending the code…');
      if (answer.retry_after > 0) countdown(button, answer.retry_after);
      else button.disabled = false;
      delivery(form, button, answer);
    } else {
      report(form, answer);
      if (answer.code === 429 && answer.retry_after) countdown(button, answer.retry_after);
      else button.disabled = false;
    }
  });
});

// After "Send code": ask every 1.5 s whether the code was delivered, for up to a minute.
async function delivery(form, button, sent) {
  const query = `task_id=${encodeURIComponent(sent.task_id)}&receipt=${encodeURIComponent(sent.receipt)}`;
  for (let i = 0; i < 40; i++) {
    await new Promise(resolve => setTimeout(resolve, 1500));
    let answer;
    try { answer = await api('GET', `/api/v1/user/sms/status?${query}`); } catch (e) { continue; }
    if (answer.code === 100) { report(form, answer, 'Code sent. It is valid for a few minutes.'); return; }
    if (answer.code === 104) {
      report(form, {errors: {sms_code: 'We could not send the code. Please try again.'}});
      button.dataset.run = String(Number(button.dataset.run || 0) + 1);  // stop the countdown
      button.textContent = button.dataset.label || button.textContent;
      button.disabled = false;
      return;
    }
  }
}

document.querySelectorAll('[data-tab]').forEach(tab => {
  tab.addEventListener('click', () => {
    document.querySelectorAll('[data-tab]').forEach(t => t.classList.toggle('active', t === tab));
    document.querySelectorAll('[data-panel]').forEach(panel => { panel.hidden = panel.dataset.panel !== tab.dataset.tab; });
  });
});

document.querySelectorAll('[data-logout]').forEach(button => {
  button.addEventListener('click', async () => {
    await api('POST', '/api/v1/user/logout').catch(() => null);
    location.href = '/';
  });
});

// Home carousel: advances every 5 s, pauses while pointed at or focused, arrows and dots.
function carousel(root) {
  const slides = [...root.querySelectorAll('.slide')];
  const dots = [...root.querySelectorAll('[data-dot]')];
  if (slides.length < 2) return;
  let current = 0;
  let paused = false;
  const show = index => {
    current = (index + slides.length) % slides.length;
    slides.forEach((slide, i) => {
      const on = i === current;
      slide.classList.toggle('active', on);
      slide.setAttribute('aria-hidden', on ? 'false' : 'true');
      slide.querySelectorAll('a').forEach(a => { a.tabIndex = on ? 0 : -1; });
    });
    dots.forEach((dot, i) => {
      dot.classList.toggle('active', i === current);
      if (i === current) dot.setAttribute('aria-current', 'true'); else dot.removeAttribute('aria-current');
    });
    root.dataset.current = String(current);
  };
  root.querySelector('[data-prev]').addEventListener('click', () => show(current - 1));
  root.querySelector('[data-next]').addEventListener('click', () => show(current + 1));
  dots.forEach(dot => dot.addEventListener('click', () => show(Number(dot.dataset.dot))));
  for (const [event, value] of [['mouseenter', true], ['mouseleave', false], ['focusin', true], ['focusout', false]]) {
    root.addEventListener(event, () => { paused = value; });
  }
  if (!window.matchMedia('(prefers-reduced-motion: reduce)').matches) {
    setInterval(() => { if (!paused && !document.hidden) show(current + 1); }, 5000);
  }
}

document.querySelectorAll('[data-carousel]').forEach(carousel);
