// Rows are [platform, status, test, subtest, files, note, dir, seconds];
// rendered a page at a time so a million-result store stays usable.
(function () {
  const PAGE = 1000;
  const body = document.querySelector('#results tbody');
  const count = document.getElementById('count');
  const more = document.getElementById('more');
  const boxes = Array.from(document.querySelectorAll('#status-filter input'));
  const platform = document.getElementById('platform');
  const name = document.getElementById('name');
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
      cell(tr, r[1] === null ? '(none)' : r[1], 'status st-' + (r[1] || ''));
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
      if (n && !(r[2].toLowerCase().includes(n) || (r[3] || '').toLowerCase().includes(n))) continue;
      matches.push(i);
    }
    body.textContent = '';
    shown = 0;
    render(PAGE);
  }
  for (const b of boxes) b.addEventListener('change', apply);
  platform.addEventListener('change', apply);
  name.addEventListener('input', apply);
  more.addEventListener('click', () => render(shown + PAGE));
  apply();
})();
