import Foundation
import PackagePlugin

/// Embeds every file under a target's `Resources/` folder into the binary as a Swift source
/// file, so the pages and the OpenAPI document ship inside `tally` itself: a binary installed
/// alone on another path still serves them (unlike `Bundle.module`, a folder beside the binary).
@main
struct EmbedResources: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let resources = target.directoryURL.appendingPathComponent("Resources")
        let files = (FileManager.default.enumerator(at: resources, includingPropertiesForKeys: nil)?.allObjects as? [URL] ?? [])
            .filter { !$0.hasDirectoryPath }
            .sorted { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("EmbeddedResources.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(files.count) resources of \(target.name)",
                executable: try context.tool(named: "embed-resources").url,
                arguments: [output.path, resources.path] + files.map(\.path),
                inputFiles: files,
                outputFiles: [output])
        ]
    }
}
