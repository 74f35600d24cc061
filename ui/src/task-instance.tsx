// Entry of task-instance.js: the "Resilience" tab (plugin destination "task_instance").
import { TaskInstanceTab } from "./components/TaskInstanceTab";
import { registerPlugin } from "./lib/register";

export default registerPlugin(TaskInstanceTab);
