// The console: forms that send the JSON admin API what its body models expect (each input's
// data-kind says the JSON type), errors shown next to their fields, confirmed actions, bulk
// actions on a list's ticked rows, and image uploads. Uses api() and report() from sprig.js.
'use strict';

// The offset of an IANA zone at a local date and time, as +08:00 (Intl knows every zone).
function zoneOffset(zone, local) {
  const guess = new Date(`${local}Z`);
  const name = new Intl.DateTimeFormat('en-US', {timeZone: zone, timeZoneName: 'longOffset'})
    .formatToParts(guess).find(part => part.type === 'timeZoneName').value;  // GMT+08:00, or GMT
  return name === 'GMT' ? '+00:00' : name.slice(3);
}

const READERS = {
  boolean: el => el.checked,
  integer: el => (/^-?\d+$/.test(el.value.trim()) ? Number(el.value) : el.value),
  reference: el => (el.value === '' ? null : Number(el.value)),
  datetime: el => (el.value === '' ? '' : `${el.value.length === 16 ? `${el.value}:00` : el.value}${zoneOffset(el.dataset.zone, el.value)}`),
  date: el => el.value,
  decimal: el => el.value.trim(),
  text: el => el.value,
};

function body(form) {
  const data = {};
  for (const el of form.querySelectorAll('[name][data-kind]')) {
    if (el.disabled) continue;
    const value = READERS[el.dataset.kind](el);
    if (value === '' && el.dataset.kind !== 'text') continue;  // left empty: the API's default
    if (value === '' && el.type === 'password') continue;
    data[el.name] = value;
  }
  return data;
}

function go(next, answer) {
  if (next === 'reload') window.location.reload();
  else if (next) window.location.assign(next.replace('{id}', answer.result ? answer.result.id : ''));
}

document.querySelectorAll('form[data-endpoint]').forEach(form => {
  form.addEventListener('input', event => {  // a field edited: its old error no longer holds
    const slot = form.querySelector(`.field-error[data-for="${event.target.name}"]`);
    if (slot) slot.textContent = '';
    event.target.removeAttribute('aria-invalid');
  });
  form.addEventListener('submit', async event => {
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const answer = await api(form.dataset.method, form.dataset.endpoint, body(form));
      if (answer.code === 100) go(form.dataset.next, answer);
      report(form, answer, answer.code === 100 ? answer.msg : '');
    } finally {
      button.disabled = false;
    }
  });
});

// A button that calls the API: data-call="METHOD path", optional data-body (JSON), data-confirm, data-then.
document.querySelectorAll('button[data-call]').forEach(button => {
  button.addEventListener('click', async () => {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const [method, path] = button.dataset.call.split(' ');
    const status = button.parentElement.querySelector('.form-status');
    button.disabled = true;
    const answer = await api(method, path, button.dataset.body ? JSON.parse(button.dataset.body) : undefined);
    button.disabled = false;
    if (answer.code === 100 && button.dataset.then) { go(button.dataset.then, answer); return; }
    if (status) {
      status.textContent = answer.msg;
      status.classList.toggle('ok', answer.code === 100);
    }
  });
});

document.querySelectorAll('form[data-bulk]:not([data-bulk=""])').forEach(form => {
  const all = form.querySelector('[data-select-all]');
  all.addEventListener('change', () => form.querySelectorAll('[name=ids]').forEach(box => { box.checked = all.checked; }));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    const ids = [...form.querySelectorAll('[name=ids]:checked')].map(box => Number(box.value));
    const action = form.elements.action.value;
    const status = form.querySelector('.form-status');
    if (!ids.length) { status.textContent = 'Tick the rows first.'; return; }
    if (action === 'delete' && !window.confirm(`Delete ${ids.length} row(s)? They will show nowhere.`)) return;
    const answer = await api('POST', form.dataset.bulk, {ids, action});
    if (answer.code === 100) window.location.reload();
    else status.textContent = answer.msg;
  });
});

document.querySelectorAll('input[type=file][data-upload-for]').forEach(input => {
  input.addEventListener('change', async () => {
    const form = input.closest('form');
    const name = input.dataset.uploadFor;
    const slot = form.querySelector(`.field-error[data-for="${name}"]`);
    slot.textContent = 'Uploading…';
    const data = new FormData();
    data.append('file', input.files[0]);
    const res = await fetch('/api/v1/admin/uploads', {method: 'POST', body: data, credentials: 'same-origin'});
    const answer = await res.json().catch(() => ({msg: `upload failed (${res.status})`}));
    input.value = '';
    if (answer.code !== 100) { slot.textContent = (answer.errors && answer.errors.file) || answer.msg; return; }
    slot.textContent = '';
    form.elements[name].value = answer.url;
    form.querySelector(`[data-preview-for="${name}"]`).src = answer.url;
  });
});
