// Entry of fleet.js: the fleet dashboard page (plugin destination "nav").
import { FleetPage } from "./components/FleetPage";
import { registerPlugin } from "./lib/register";

export default registerPlugin(FleetPage);
