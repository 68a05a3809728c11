import { render } from "preact"
import { App } from "./App.js"
import { Session } from "./session.js"
import "./style.css"

const session = new Session()
render(<App session={session} />, document.getElementById("app")!)
