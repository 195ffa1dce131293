// Rows are [platform, status, test, subtest, files, note, dir, seconds]
// and, for a test that ran more than once, {attempts, flaky, earlier};
// rendered a page at a time so a million-result store stays usable.
(function () {
  const PAGE = 1000;
  const body = document.querySelector('#results tbody');
  const count = document.getElementById('count');
  const more = document.getElementById('more');
  const boxes = Array.from(document.querySelectorAll('#status-filter input'));
  const platform = document.getElementById('platform');
  const name = document.getElementById('name');
  const flakyOnly = document.getElementById('flaky-only');
  let matches = [];
  let shown = 0;
  function href(dir, file) {
    return (dir + '/' + file).split('/').map(encodeURIComponent).join('/');
  }
  function cell(tr, text, cls) {
    const td = document.createElement('td');
    if (text !== null && text !== undefined) td.textContent = String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function render(upto) {
    const frag = document.createDocumentFragment();
    for (; shown < upto && shown < matches.length; shown++) {
      const r = ROWS[matches[shown]];
      const tr = document.createElement('tr');
      tr.dataset.status = r[1] || '';
      cell(tr, r[0]);
      const st = cell(tr, r[1] === null ? '(none)' : r[1], 'status st-' + (r[1] || ''));
      const runs = r[8];
      if (runs) {
        tr.dataset.attempts = runs.attempts;
        if (runs.flaky) {
          tr.dataset.flaky = '';
          const mark = document.createElement('span');
          mark.className = 'flaky';
          mark.textContent = 'flaky';
          mark.title = 'earlier: ' + runs.earlier.map(s => s === null ? '(none)' : s).join(', ');
          st.appendChild(mark);
        }
        const n = document.createElement('span');
        n.className = 'attempts';
        n.textContent = runs.attempts + ' attempts';
        st.appendChild(n);
      }
      cell(tr, r[2]);
      cell(tr, r[3]);
      cell(tr, r[5]);
      const files = cell(tr, null, 'files');
      for (const f of r[4]) {
        const a = document.createElement('a');
        a.href = href(r[6], f);
        a.textContent = f;
        files.appendChild(a);
      }
      cell(tr, r[7]);
      frag.appendChild(tr);
    }
    body.appendChild(frag);
    count.textContent = 'showing ' + shown + ' of ' + matches.length + ' matching results (' + ROWS.length + ' in all)';
    more.hidden = shown >= matches.length;
  }
  function apply() {
    const statuses = new Set(boxes.filter(b => b.checked).map(b => b.value));
    const p = platform.value;
    const n = name.value.toLowerCase();
    matches = [];
    for (let i = 0; i < ROWS.length; i++) {
      const r = ROWS[i];
      if (!statuses.has(r[1] || '')) continue;
      if (p && r[0] !== p) continue;
      if (flakyOnly && flakyOnly.checked && !(r[8] && r[8].flaky)) continue;
      if (n && !(r[2].toLowerCase().includes(n) || (r[3] || '').toLowerCase().includes(n))) continue;
      matches.push(i);
    }
    body.textContent = '';
    shown = 0;
    render(PAGE);
  }
  for (const b of boxes) b.addEventListener('change', apply);
  platform.addEventListener('change', apply);
  if (flakyOnly) flakyOnly.addEventListener('change', apply);
  name.addEventListener('input', apply);
  more.addEventListener('click', () => render(shown + PAGE));
  apply();
})();
