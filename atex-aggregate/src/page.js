// Rows are [platform, status, test, subtest, files, note, dir, seconds]
// and, for a test that ran more than once, {attempts, flaky, earlier}.
// ROWS starts with the page's own rows; the others are in ROW_CHUNKS files
// ROWS_DIR/000001.js ... (each calls ATEX_ROWS), loaded one after another
// only when needed: a filter or "show more" wants more matches than the
// rows loaded give, or a sort needs them all. Matches are rendered a page
// at a time, so a million-result store stays usable.
(function () {
  const PAGE = 1000;
  const body = document.querySelector('#results tbody');
  const count = document.getElementById('count');
  const more = document.getElementById('more');
  const boxes = Array.from(document.querySelectorAll('#status-filter input'));
  const platform = document.getElementById('platform');
  const name = document.getElementById('name');
  const flakyOnly = document.getElementById('flaky-only');
  let loadedChunks = 0;
  let loading = false;
  let failed = null;
  let matches = [];
  let scanned = 0;
  let shown = 0;
  let wanted = PAGE;
  let sort = null; // {col, dir}
  let filter = null;
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
  function mark(parent, cls, text, title) {
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = text;
    if (title) span.title = title;
    parent.appendChild(span);
  }
  // The same rule as the summary's (report::is_timeout).
  function timedOut(r) {
    return r[1] === 'infra' && typeof r[5] === 'string' && r[5].includes('duration timeout reached');
  }
  // Seconds, one format: always one decimal.
  function seconds(v) {
    return typeof v === 'number' ? v.toFixed(1) : '';
  }
  function allLoaded() {
    return loadedChunks >= ROW_CHUNKS;
  }
  function row(r) {
    const tr = document.createElement('tr');
    tr.dataset.status = r[1] || '';
    cell(tr, r[0]);
    const st = cell(tr, r[1] === null ? '(none)' : r[1], 'status st-' + (r[1] || ''));
    if (timedOut(r)) {
      tr.dataset.timeout = '';
      mark(st, 'timeout', 'timeout', 'stopped at the end of its duration');
    }
    const runs = r[8];
    if (runs) {
      tr.dataset.attempts = runs.attempts;
      if (runs.flaky) {
        tr.dataset.flaky = '';
        mark(st, 'flaky', 'flaky', 'earlier: ' + runs.earlier.map(s => s === null ? '(none)' : s).join(', '));
      }
      mark(st, 'attempts', runs.attempts + ' attempts');
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
    cell(tr, seconds(r[7]), 'seconds');
    return tr;
  }
  function say() {
    let text = 'showing ' + shown + ' of ' + matches.length + ' matching results';
    if (allLoaded()) {
      text += ' (' + ROWS.length + ' in all)';
    } else {
      text += ' in the first ' + ROWS.length + ' rows read (more are read as they are needed)';
    }
    if (loading) text += ', reading more...';
    if (sort && !allLoaded()) text += ', reading every row to sort';
    if (failed) text += '; failed to read ' + failed;
    count.textContent = text;
    more.hidden = shown >= matches.length && allLoaded();
  }
  function render() {
    const frag = document.createDocumentFragment();
    for (; shown < wanted && shown < matches.length; shown++) {
      frag.appendChild(row(ROWS[matches[shown]]));
    }
    body.appendChild(frag);
    say();
  }
  function matchesFilter(r) {
    const f = filter;
    if (!f.statuses.has(r[1] || '')) return false;
    if (f.platform && r[0] !== f.platform) return false;
    if (f.flaky && !(r[8] && r[8].flaky)) return false;
    if (f.name && !(r[2].toLowerCase().includes(f.name) || (r[3] || '').toLowerCase().includes(f.name))) return false;
    return true;
  }
  function scan() {
    for (; scanned < ROWS.length; scanned++) {
      if (matchesFilter(ROWS[scanned])) matches.push(scanned);
    }
  }
  function sortMatches() {
    const {col, dir} = sort;
    const key = i => {
      const v = ROWS[i][col];
      return v === null || v === undefined ? '' : v;
    };
    matches.sort((a, b) => {
      const x = key(a), y = key(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return c !== 0 ? dir * c : a - b;
    });
  }
  // Read the next chunk when more rows are needed and none is on its way.
  function need() {
    const short = matches.length < wanted || sort !== null;
    if (!short || allLoaded() || loading || failed) return;
    loading = true;
    const script = document.createElement('script');
    const n = loadedChunks + 1;
    script.src = ROWS_DIR + '/' + String(n).padStart(6, '0') + '.js';
    script.onerror = () => {
      loading = false;
      failed = script.src;
      say();
    };
    document.head.appendChild(script);
    say();
  }
  window.ATEX_ROWS = function (n, rows) {
    for (const r of rows) ROWS.push(r);
    loadedChunks = n;
    loading = false;
    scan();
    if (sort) {
      if (allLoaded()) {
        sortMatches();
        body.textContent = '';
        shown = 0;
        render();
      }
    } else {
      render();
    }
    need();
    say();
  };
  function apply() {
    filter = {
      statuses: new Set(boxes.filter(b => b.checked).map(b => b.value)),
      platform: platform.value,
      flaky: flakyOnly && flakyOnly.checked,
      name: name.value.toLowerCase(),
    };
    matches = [];
    scanned = 0;
    scan();
    if (sort && allLoaded()) sortMatches();
    body.textContent = '';
    shown = 0;
    wanted = PAGE;
    if (!sort || allLoaded()) render();
    need();
    say();
  }
  for (const th of document.querySelectorAll('#results th[data-sort]')) {
    th.classList.add('sortable');
    th.addEventListener('click', () => {
      const col = Number(th.dataset.sort);
      const dir = sort && sort.col === col ? -sort.dir : 1;
      sort = {col, dir};
      for (const other of document.querySelectorAll('#results th[data-sort]')) other.dataset.dir = '';
      th.dataset.dir = dir > 0 ? 'up' : 'down';
      apply();
    });
  }
  for (const b of boxes) b.addEventListener('change', apply);
  platform.addEventListener('change', apply);
  if (flakyOnly) flakyOnly.addEventListener('change', apply);
  name.addEventListener('input', apply);
  more.addEventListener('click', () => {
    wanted = shown + PAGE;
    render();
    need();
  });
  apply();
})();

// The timeline: TIMELINE.chunks files TIMELINE.dir/000001.js ... (the
// store's attempts) and TIMELINE.earlier files earlier-000001.js ... (the
// earlier attempts of rerun tests), each calling ATEX_TIMELINE(kind, n,
// entries), read one after another when the timeline is first opened.
// An entry is [machine, started, seconds, status, test, attempt], or 0
// for a result that is not a test's own with a machine and a start. One
// row per machine, in the order they started; one bar per attempt.
(function () {
  const MAX_BARS = 50000;
  const details = document.getElementById('timeline');
  const view = document.getElementById('timeline-view');
  if (!details || !view || typeof TIMELINE === 'undefined') return;
  const files = [];
  for (let n = 1; n <= TIMELINE.chunks; n++) files.push([0, n, String(n).padStart(6, '0') + '.js']);
  for (let n = 1; n <= TIMELINE.earlier; n++) files.push([1, n, 'earlier-' + String(n).padStart(6, '0') + '.js']);
  const machines = new Map();
  let bars = 0, min = Infinity, max = -Infinity;
  let next = 0;
  let asked = false;
  function add(kind, entries) {
    for (const e of entries) {
      if (!Array.isArray(e)) continue;
      const start = Date.parse(e[1]);
      if (isNaN(start)) continue;
      const end = start + Math.max(Number(e[2]) || 0, 0) * 1000;
      if (start < min) min = start;
      if (end > max) max = end;
      let m = machines.get(e[0]);
      if (!m) {
        m = {first: start, bars: []};
        machines.set(e[0], m);
      }
      if (start < m.first) m.first = start;
      m.bars.push([start, end, e, kind]);
      bars++;
    }
  }
  function title(e, kind) {
    let t = e[4] + (e[5] ? ' (attempt ' + e[5] + ')' : '') + ': ' + (e[3] === null ? '(no status)' : e[3]);
    t += ', ' + Number(e[2]).toFixed(1) + ' s, on ' + e[0] + ', from ' + e[1];
    if (kind === 1) t += ' (rerun later)';
    return t;
  }
  // Over MAX_BARS, a machine's attempts are drawn grouped: one bar per
  // status in each of its GROUPS stretches of time (a single attempt
  // would be narrower than a pixel anyway), failures on top.
  const GROUPS = 1000;
  const ORDER = {pass: 0, skip: 1, info: 1, warn: 2};
  function grouped(m, span) {
    const groups = new Map();
    for (const b of m.bars) {
      const status = b[2][3] || 'none';
      const key = Math.floor((b[0] - min) / span * GROUPS) + ' ' + status;
      const g = groups.get(key);
      if (g) {
        g[0] = Math.min(g[0], b[0]);
        g[1] = Math.max(g[1], b[1]);
        g[2]++;
      } else {
        groups.set(key, [b[0], b[1], 1, status]);
      }
    }
    const rank = s => (s in ORDER ? ORDER[s] : 3);
    return Array.from(groups.values()).sort((a, b) => rank(a[3]) - rank(b[3]) || a[0] - b[0]);
  }
  function bar(start, end, span, status) {
    const div = document.createElement('div');
    div.className = 'tl-bar st-' + status;
    div.style.left = ((start - min) / span * 100) + '%';
    div.style.width = ((end - start) / span * 100) + '%';
    return div;
  }
  function draw() {
    view.textContent = '';
    if (bars === 0) {
      view.textContent = 'no test attempt with a machine and a start time';
      return;
    }
    const span = Math.max(max - min, 1);
    const rows = Array.from(machines.entries()).sort((a, b) => a[1].first - b[1].first);
    const group = bars > MAX_BARS;
    const note = document.createElement('p');
    note.textContent = bars + ' attempts on ' + rows.length + ' machines, ' + (span / 1000).toFixed(1) + ' s from ' + new Date(min).toISOString();
    if (group) note.textContent += ' (grouped: a bar per status in each ' + (span / GROUPS / 1000).toFixed(1) + ' s)';
    view.appendChild(note);
    const frag = document.createDocumentFragment();
    for (const [machine, m] of rows) {
      const row = document.createElement('div');
      row.className = 'tl-row';
      row.dataset.machine = machine;
      const label = document.createElement('span');
      label.className = 'tl-machine';
      label.textContent = machine;
      label.title = machine;
      row.appendChild(label);
      const lane = document.createElement('div');
      lane.className = 'tl-lane';
      if (group) {
        for (const [start, end, n, status] of grouped(m, span)) {
          const div = bar(start, end, span, status);
          div.dataset.attempts = n;
          div.title = n + ' attempts: ' + status + ', from ' + new Date(start).toISOString() + ' to ' + new Date(end).toISOString();
          lane.appendChild(div);
        }
      } else {
        m.bars.sort((a, b) => a[0] - b[0]);
        for (const [start, end, e, kind] of m.bars) {
          const div = bar(start, end, span, e[3] || 'none');
          div.dataset.test = e[4];
          div.dataset.attempt = e[5];
          if (kind === 1) div.dataset.earlier = '';
          div.title = title(e, kind);
          lane.appendChild(div);
        }
      }
      row.appendChild(lane);
      frag.appendChild(row);
    }
    view.appendChild(frag);
  }
  // Read the next file, or draw when all are read.
  function read() {
    if (next >= files.length) {
      draw();
      return;
    }
    view.textContent = 'reading the timeline (' + (next + 1) + ' of ' + files.length + ')...';
    const script = document.createElement('script');
    script.src = TIMELINE.dir + '/' + files[next][2];
    script.onerror = () => { view.textContent = 'failed to read ' + script.src; };
    document.head.appendChild(script);
  }
  window.ATEX_TIMELINE = function (kind, n, entries) {
    add(kind, entries);
    next++;
    read();
  };
  details.addEventListener('toggle', () => {
    if (!details.open || asked) return;
    asked = true;
    read();
  });
})();
