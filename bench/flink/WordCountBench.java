// `make bench`'s Flink side of the engine comparison (crates/rheo-bench/src/compare.rs): the job
// of `rheo run word-count --event-time --window 1s --input IN --output OUT -p P` written against
// Flink's DataStream API, run in Flink's local MiniCluster inside this JVM.
//
// Lines `<ms>\t<words>` from a file; the timestamp from the line, watermarks that trail the
// largest timestamp by nothing; words split on whitespace; key by word; 1 s tumbling event-time
// windows; a count per (window, word), written as CSV `window end,word,count` to
// OUT/part-<subtask>.csv.
//
// Usage: java -cp "<flink>/lib/*:<this jar>" WordCountBench IN OUT P

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

public class WordCountBench {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            throw new IllegalArgumentException("usage: WordCountBench IN OUT PARALLELISM");
        }
        String input = args[0];
        String output = args[1];
        int parallelism = Integer.parseInt(args[2]);
        Files.createDirectories(Paths.get(output));

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(parallelism);
        FileSource<String> source =
                FileSource.forRecordStreamFormat(new TextLineInputFormat(), new Path(input)).build();
        WatermarkStrategy<String> watermarks = WatermarkStrategy.<String>forBoundedOutOfOrderness(Duration.ZERO)
                .withTimestampAssigner((line, previous) -> Long.parseLong(line.substring(0, line.indexOf('\t'))));
        env.fromSource(source, watermarks, "file")
                .flatMap((FlatMapFunction<String, String>) (line, out) -> {
                    for (String word : line.substring(line.indexOf('\t') + 1).split("\\s+")) {
                        if (!word.isEmpty()) {
                            out.collect(word);
                        }
                    }
                })
                .returns(Types.STRING)
                .keyBy(word -> word)
                .window(TumblingEventTimeWindows.of(Duration.ofSeconds(1)))
                .aggregate(new Count(), new WithWindowEnd())
                .sinkTo(new CsvFiles(output));
        env.execute("word-count");
    }

    /** Counts a window's records of one key. */
    public static class Count implements AggregateFunction<String, Long, Long> {
        @Override
        public Long createAccumulator() {
            return 0L;
        }

        @Override
        public Long add(String word, Long count) {
            return count + 1;
        }

        @Override
        public Long getResult(Long count) {
            return count;
        }

        @Override
        public Long merge(Long a, Long b) {
            return a + b;
        }
    }

    /** `window end,word,count`. */
    public static class WithWindowEnd extends ProcessWindowFunction<Long, String, String, TimeWindow> {
        @Override
        public void process(String word, Context context, Iterable<Long> counts, Collector<String> out) {
            for (Long count : counts) {
                out.collect(context.window().getEnd() + "," + word + "," + count);
            }
        }
    }

    /** Each subtask appends its lines to OUT/part-<subtask>.csv. */
    public static class CsvFiles implements Sink<String> {
        private final String dir;

        CsvFiles(String dir) {
            this.dir = dir;
        }

        @Override
        public SinkWriter<String> createWriter(WriterInitContext context) throws IOException {
            int subtask = context.getTaskInfo().getIndexOfThisSubtask();
            BufferedWriter file = Files.newBufferedWriter(Paths.get(dir, "part-" + subtask + ".csv"), StandardCharsets.UTF_8);
            return new SinkWriter<String>() {
                @Override
                public void write(String line, Context context) throws IOException {
                    file.write(line);
                    file.write('\n');
                }

                @Override
                public void flush(boolean endOfInput) throws IOException {
                    file.flush();
                }

                @Override
                public void close() throws IOException {
                    file.close();
                }
            };
        }
    }
}
