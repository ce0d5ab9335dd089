package org.postvault.services;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.cluster.service.ClusterService;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * Runs one real OpenSearch 2.19 node in this JVM, for tests and development only.
 *
 * <p>The official distribution starts a node through {@code Bootstrap}, which also
 * installs the Java security manager, checks for jar hell and runs the production
 * bootstrap checks. A plain {@link Node} does none of that, so this process must only
 * ever listen on loopback: it has no security plugin either, unless a test adds it
 * ({@code -Dpv.plugins=...}).
 *
 * <p>Arguments are OpenSearch settings as {@code key=value}; {@code path.home} is
 * required. Defaults below give a single-node cluster on 127.0.0.1.
 */
public final class OpenSearchNode extends Node {

    /** The modules the distribution ships that postvault needs (2.x class names). */
    static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class,          // HTTP and transport
        CommonAnalysisPlugin.class,  // pattern tokenizer, lowercase/asciifolding filters, ...
        MapperExtrasPlugin.class,    // scaled_float, rank_feature, search_as_you_type, ...
        PainlessPlugin.class,        // scripts (update_by_query, script fields)
        ReindexPlugin.class          // _reindex, _update_by_query, _delete_by_query
    );

    private OpenSearchNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
        super(env, plugins, true);
    }

    /**
     * {@link #PLUGINS} and the plugin classes named in {@code names} (comma-separated), found on
     * the classpath. tests/test_deployment.py adds the security plugin this way, to run
     * docker-compose.yml's security configuration on a real node.
     */
    static List<Class<? extends Plugin>> plugins(String names) throws ClassNotFoundException {
        List<Class<? extends Plugin>> all = new java.util.ArrayList<>(PLUGINS);
        for (String name : names.split(",")) {
            if (!name.isBlank()) {
                all.add(Class.forName(name.strip()).asSubclass(Plugin.class));
            }
        }
        return all;
    }

    /**
     * In a distribution this registers a log4j listener that puts node and cluster id
     * into the log pattern; it needs the distribution's logging setup, so skip it.
     */
    @Override
    protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {
    }

    public static void main(String[] args) throws Exception {
        Settings.Builder given = Settings.builder();
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                System.err.println("opensearch-node: arguments are key=value settings, got: " + arg);
                System.exit(2);
            }
            given.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        Settings user = given.build();
        String home = user.get("path.home");
        if (home == null) {
            System.err.println("opensearch-node: path.home=<dir> is required");
            System.exit(2);
        }
        Path homePath = Paths.get(home).toAbsolutePath();
        Path config = homePath.resolve("config");
        // PluginsService scans these; they must exist (and stay empty: the plugins
        // come from the classpath).
        Files.createDirectories(homePath.resolve("modules"));
        Files.createDirectories(homePath.resolve("plugins"));
        Files.createDirectories(config);

        Settings settings = Settings.builder()
            .put("cluster.name", "postvault-dev")
            .put("node.name", "postvault-dev")
            .put("path.data", homePath.resolve("data").toString())
            .put("path.logs", homePath.resolve("logs").toString())
            .put("network.host", "127.0.0.1")
            .put("http.port", "59200")
            .put("transport.port", "59300")
            .put("discovery.type", "single-node")
            .put("cluster.routing.allocation.disk.threshold_enabled", "false")
            .put("action.auto_create_index", "true")
            .put(user)
            .put("path.home", homePath.toString())
            .build();

        String nodeName = settings.get("node.name");
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, java.util.Collections.emptyMap(), config, () -> nodeName);
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName(nodeName);
        // Reads config/log4j2.properties (scripts/services puts a minimal one there).
        LogConfigurator.configure(env);

        OpenSearchNode node = new OpenSearchNode(env, plugins(System.getProperty("pv.plugins", "")));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "opensearch-node-shutdown"));
        node.start();
        System.out.println("opensearch-node: started, http on "
            + settings.get("network.host") + ":" + settings.get("http.port"));
        stopped.await();
    }
}
