// The page's one import of a loader, as a user's app would write it.
import data from './data.vmd.py'

document.querySelector('#message').textContent = data.message
