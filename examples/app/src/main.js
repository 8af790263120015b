// Python loaders imported like any module: each import runs a *.vmd.py file through vmd.
import users from './data/users.vmd.py'
import admins from './data/users.vmd.py?role=admin'
import posts from './data/posts.vmd.py'
import build from './data/build.vmd.py?target=staging'

// Client state that must survive hot updates of the data: edit content/users/*.csv and the
// table changes while the counter keeps its value.
const state = { clicks: 0, users, admins, posts, build }

const app = document.querySelector('#app')

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function render() {
  const { users, admins, posts, build } = state
  app.innerHTML = `
    <header>
      <h1>vmd + Vite</h1>
      <span class="muted" id="build">${escape(build.target)} · ${escape(build.mode)} · Python ${escape(build.python)}</span>
    </header>
    <p><button id="counter" type="button">clicked ${state.clicks} times</button>
       <span class="muted">state kept across hot updates</span></p>
    <h2>Users <span class="muted" id="user-count">(${users.length}, ${admins.length} admin)</span></h2>
    <table id="users">
      <tr><th>name</th><th>role</th><th>joined</th></tr>
      ${users.map((u) => `<tr><td>${escape(u.name)}</td><td>${escape(u.role)}</td><td>${escape(u.joined)}</td></tr>`).join('')}
    </table>
    <h2>Posts</h2>
    <div id="posts">${Object.values(posts).map((p) => `<article>${p.html}</article>`).join('')}</div>
  `
  app.querySelector('#counter').addEventListener('click', () => {
    state.clicks += 1
    render()
  })
}

render()

if (import.meta.hot) {
  // Accept new data in place: no page reload, `state.clicks` stays.
  import.meta.hot.accept('./data/users.vmd.py', (mod) => mod && ((state.users = mod.default), render()))
  import.meta.hot.accept('./data/users.vmd.py?role=admin', (mod) => mod && ((state.admins = mod.default), render()))
  import.meta.hot.accept('./data/posts.vmd.py', (mod) => mod && ((state.posts = mod.default), render()))
  import.meta.hot.accept('./data/build.vmd.py?target=staging', (mod) => mod && ((state.build = mod.default), render()))
}
